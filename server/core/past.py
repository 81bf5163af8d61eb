"""Time travel: `as_of` on search_memories and list_memories, answered from the history.

The history holds every version of every memory with the time span it stood for (from its event
to the next change), so the memories as they stood at a time are each one's state after its last
change up to then (`HistoryStore.list_at`). A search ranks the versions standing at `as_of` the
way the current search does (dense, keyword or hybrid, recency counted from `as_of`), over an
index of every version of the filter's memories (`HistoryStore.versions`), built at the first
`as_of` search of that filter and kept until the history database changes: old texts' vectors
come from the embeddings cache where stored, else from the embedder (and are stored for the next
build). Current searches do not come here: their speed is unchanged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from milvus_memory_mcp import ranking
from milvus_memory_mcp.core.query import content_query, dense_vectors, favour_answer_type, scope_names
from milvus_memory_mcp.core.search import GATE_POOL
from milvus_memory_mcp.embedders import Embedder, signature
from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.filters import And
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.keywords import analyse, words_with_context
from milvus_memory_mcp.records import MemoryRecord, Scope, context_of
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Hits

if TYPE_CHECKING:  # numpy is imported after the MCP handshake
    from milvus_memory_mcp.search_index import SearchIndex

logger = logging.getLogger(__name__)

EMBED_CHUNK = 256  # old texts embedded per call
CACHED_VERSIONS = 200_000  # versions kept indexed across filters (~300 MB of vectors at 384 dims)
Embedded = dict[str, tuple[Any, str]]  # text hash -> (float32 vector, analysed words)


@dataclass
class Versions:
    """Every version of a filter's memories in one search index (keyed by position), with the time
    span each stood for: what `as_of` searches of that filter read, until the history changes."""

    mark: tuple[int, int]
    records: list[MemoryRecord]
    started: Any  # int64 µs, per version
    ended: Any  # int64 µs (the largest int64: it stands now)
    index: SearchIndex

    def standing(self, at: int) -> list[str]:
        import numpy as np

        rows = np.flatnonzero((self.started <= at) & (at < self.ended))
        return [str(r) for r in rows]


class PastSearch:
    """`as_of` searches, over a per-filter index of every version (built once, reused by every
    later `as_of` search of that filter until the next commit to the history). BM25 statistics
    are those of all the filter's versions."""

    def __init__(self, settings: Settings, history: HistoryStore, embedder: Embedder) -> None:
        self.settings = settings
        self._history = history
        self._embedder = embedder
        self._cache: OrderedDict[str, Versions] = OrderedDict()
        self._building = anyio.Lock()

    async def search(self, text: str, where: And, at: int, limit: int) -> Hits:
        """The best `limit` versions standing at `at` (µs) within `where` for `text`, best first."""
        versions = await self._versions(where)
        standing = versions.standing(at)
        if not standing:
            return []
        names = scope_names(where)  # the query handling of current searches (server/core/query.py)
        [query] = await dense_vectors(self._embedder, [text], names)
        s = self.settings
        words = content_query(text, names)
        hits = await anyio.to_thread.run_sync(self._rank, versions, standing, query, words, max(limit, 20))
        hits = favour_answer_type(text, hits)
        return ranking.with_recency(hits, s.recency_weight, s.recency_half_life_days, at)[:limit]

    async def _versions(self, where: And) -> Versions:
        key = f"{self._embedder.model_id}|{where!r}"
        async with self._building:
            mark = await self._history.change_mark()
            cached = self._cache.get(key)
            if cached is not None and cached.mark == mark:
                self._cache.move_to_end(key)
                return cached
            versions = await self._build(where, mark)
            self._cache[key] = versions
            self._cache.move_to_end(key)
            while len(self._cache) > 1 and sum(len(v.records) for v in self._cache.values()) > CACHED_VERSIONS:
                self._cache.popitem(last=False)
            return versions

    async def _build(self, where: And, mark: tuple[int, int]) -> Versions:
        import numpy as np

        from milvus_memory_mcp.search_index import Entry, SearchIndex

        rows = await self._history.versions(where)
        records = [r for r, _ in rows]
        embedded = await self._embedded(records) if records else {}
        never = np.iinfo(np.int64).max
        started = np.asarray([r.updated_at for r in records], dtype=np.int64)
        ended = np.asarray([never if e is None else e for _, e in rows], dtype=np.int64)
        index = SearchIndex(self._embedder.dimensions)

        def entry(i: int, r: MemoryRecord) -> Entry:
            vector, words = embedded[r.hash]
            return Entry(str(i), Scope(), vector, words_with_context(words, context_of(r.metadata)))

        def fill() -> None:
            index.upsert(entry(i, r) for i, r in enumerate(records))

        if records:
            await anyio.to_thread.run_sync(fill)
        return Versions(mark, records, started, ended, index)

    def _rank(self, versions: Versions, standing: list[str], query: list[float], text: str, wanted: int) -> Hits:
        index, records = versions.index, versions.records
        mode = self.settings.search_mode
        everyone = Scope()  # the scope and filters were applied by `versions`
        pool_size = wanted if mode == "dense" else max(wanted, GATE_POOL)
        found = index.search(query, everyone, pool_size, among=standing) if mode != "keyword" else []
        pool = [(records[int(i)], x) for i, x in found]
        asked = analyse(text)
        found = index.search_words(asked, everyone, wanted, among=standing) if mode != "dense" else []
        words = [(records[int(i)], x) for i, x in found]
        if mode == "dense":
            return pool
        if mode == "keyword":
            return ranking.keyword_scores(words)
        return ranking.fuse(pool[:wanted], words, self.settings.keyword_weight, pool, frozenset(asked.split()))

    async def _embedded(self, records: list[MemoryRecord]) -> Embedded:
        """Each text's vector (float32 array) and analysed words: stored ones, the rest computed and stored."""
        import numpy as np

        model, dims = signature(self._embedder)
        stored = await self._history.embeddings_with_words(model, dims, sorted({r.hash for r in records}))
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
