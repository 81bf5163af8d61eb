"""Time travel: `as_of` on search_memories and list_memories, answered from the history.

The history holds every version of every memory with the time span it stood for (from its event
to the next change), so the memories as they stood at a time are each one's state after its last
change up to then (`HistoryStore.list_at`). A search over them ranks those versions the way the
current search does (dense, keyword or hybrid, recency counted from `as_of`) over a search index
built for the call: old texts' vectors come from the embeddings cache where stored, else from the
embedder (and are stored for the next call). Current searches do not come here: their speed is
unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from milvus_memory_mcp import ranking
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.errors import BackendError, InvalidInput
from milvus_memory_mcp.filters import And, parse_time
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import MemoryRecord, Scope
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Hits

logger = logging.getLogger(__name__)

EMBED_CHUNK = 256  # old texts embedded per call
Embedded = dict[str, tuple[Any, str]]  # text hash -> (float32 vector, analysed words)


def parse_as_of(value: object) -> int | None:
    """`as_of` as µs since the epoch (None: now, the current state)."""
    if value is None:
        return None
    try:
        return parse_time("as_of", value)
    except InvalidInput:
        shown = repr(value)[:60]
        raise InvalidInput(f'as_of must be an ISO-8601 time such as "2024-05-01T12:00:00Z", got {shown}.') from None


class PastSearch:
    def __init__(self, settings: Settings, history: HistoryStore, embedder: Embedder) -> None:
        self.settings = settings
        self._history = history
        self._embedder = embedder

    async def search(self, text: str, where: And, at: int, limit: int) -> Hits:
        """The best `limit` versions standing at `at` (µs) within `where` for `text`, best first."""
        records = await self._history.list_at(where, at, None)
        if not records:
            return []
        embedded = await self._embedded(records)
        [query] = await self._embedder.embed([text], kind="query")
        s = self.settings
        hits = await anyio.to_thread.run_sync(self._rank, records, embedded, query, text, max(limit, 20))
        return ranking.with_recency(hits, s.recency_weight, s.recency_half_life_days, at)[:limit]

    def _rank(
        self,
        records: list[MemoryRecord],
        embedded: Embedded,
        query: list[float],
        text: str,
        wanted: int,
    ) -> Hits:
        from milvus_memory_mcp.search_index import Entry, SearchIndex

        index = SearchIndex(len(query))
        index.upsert(Entry(r.id, Scope(), *embedded[r.hash]) for r in records)
        by_id = {r.id: r for r in records}
        mode = self.settings.search_mode
        everyone = Scope()  # the scope and filters were applied by `list_at`
        dense = [(by_id[i], x) for i, x in index.search(query, everyone, wanted)] if mode != "keyword" else []
        found = index.search_words(analyse(text), everyone, wanted) if mode != "dense" else []
        words = [(by_id[i], x) for i, x in found]
        if mode == "dense":
            return dense
        if mode == "keyword":
            return ranking.keyword_scores(words)
        return ranking.fuse(dense, words, self.settings.keyword_weight)

    async def _embedded(self, records: list[MemoryRecord]) -> Embedded:
        """Each text's vector (float32 array) and analysed words: stored ones, the rest computed and stored."""
        import numpy as np

        model = self._embedder.model_id
        stored = await self._history.embeddings_with_words(model, sorted({r.hash for r in records}))
        out = {h: (np.frombuffer(blob, dtype=np.float32), words) for h, (blob, words) in stored.items()}
        items = list({r.hash: r.memory for r in records if r.hash not in out}.items())
        for start in range(0, len(items), EMBED_CHUNK):
            chunk = items[start : start + EMBED_CHUNK]
            computed = await self._embedder.embed([t for _, t in chunk])
            for (h, t), v in zip(chunk, computed, strict=True):
                out[h] = (np.asarray(v, dtype=np.float32), analyse(t))
            try:
                await self._history.save_embeddings(
                    model, [(h, t, v) for (h, t), v in zip(chunk, computed, strict=True)]
                )
            except BackendError:
                logger.warning("could not store %d embedding(s) of earlier versions", len(chunk))
        return out
