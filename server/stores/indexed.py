"""Milvus Lite with its searches answered by an in-memory `SearchIndex` where they can be.

Milvus Lite 3.2.2 stores every memory; searches confined to a scope alone (what agents send, and
what the core's duplicate and inference checks send) are answered by `server.search_index`, the
others (metadata or time filters) by Milvus Lite. The index is built at open from the history
database (each text's embedding is stored there with its state; rows written before that are
filled in once from Milvus) and follows every write that reached Milvus.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ..filters import And, scope_only
from ..history import SQLiteHistory
from ..history.sqlite import Embedded
from ..keywords import analyse
from ..records import MemoryRecord
from .milvus import MilvusStore

if TYPE_CHECKING:  # numpy is imported after the MCP handshake, with the index
    from ..search_index import Entry, Hits, SearchIndex

logger = logging.getLogger(__name__)

BACKFILL_CHUNK = 1000


def _entry(record: MemoryRecord, vector: list[float]) -> Entry:
    import numpy as np

    from ..search_index import Entry

    return Entry(record.id, record.scope, np.asarray(vector, dtype=np.float32), analyse(record.memory))


class IndexedStore:
    def __init__(self, inner: MilvusStore, history: SQLiteHistory) -> None:
        self.inner = inner
        self._history = history
        self._index: SearchIndex | None = None

    # what the wrapped store says

    @property
    def keyword_search(self) -> bool:
        # The index has BM25 (and Milvus Lite 3.2.2 too, for the filtered searches it still answers).
        return self._index is not None or self.inner.keyword_search

    @property
    def stale_schema(self) -> bool:
        return self.inner.stale_schema

    @property
    def needs_flush(self) -> bool:
        return self.inner.needs_flush

    # lifecycle

    async def open(self, model_id: str, dimensions: int) -> None:
        await self.inner.open(model_id, dimensions)
        if self._index is None:
            self._index = await self._load(model_id, dimensions)
        await self._history.prune_embeddings()

    async def open_index(self, model_id: str, dimensions: int) -> bool:
        """Build the index from the history database alone, before Milvus opens; False when some
        embeddings must first be read from Milvus (a database written before they were stored)."""
        if self._index is None:
            rows = await self._history.live_embeddings(model_id)
            if any(r.vector is None for r in rows):
                return False
            self._index = await self._load(model_id, dimensions, rows)
        return True

    async def _load(self, model_id: str, dimensions: int, rows: list[Embedded] | None = None) -> SearchIndex:
        import numpy as np

        from ..search_index import Entry, SearchIndex

        if rows is None:
            rows = await self._history.live_embeddings(model_id)
        missing = [r for r in rows if r.vector is None]
        found: dict[str, list[float]] = {}
        if missing:
            logger.info("storing the embeddings of %d memories in the history database (once)", len(missing))
            for start in range(0, len(missing), BACKFILL_CHUNK):
                found.update(await self.inner.vectors_of([r.id for r in missing[start : start + BACKFILL_CHUNK]]))
            filled = [(r.hash, r.memory, found[r.id]) for r in missing if r.id in found]
            await self._history.save_embeddings(model_id, filled)
        entries = [
            Entry(
                r.id,
                r.scope,
                np.frombuffer(r.vector, np.float32) if r.vector is not None else np.asarray(found[r.id], np.float32),
                r.words if r.words is not None else analyse(r.memory),
            )
            for r in rows
            if r.vector is not None or r.id in found  # the others are pending: re-applied after open
        ]
        index = SearchIndex(dimensions)
        await anyio.to_thread.run_sync(index.upsert, entries)
        logger.info("search index ready: %d memories", len(index))
        return index

    async def close(self) -> None:
        self._index = None
        await self.inner.close()

    async def recreate(self, model_id: str, dimensions: int) -> None:
        await self.inner.recreate(model_id, dimensions)

    async def flush(self) -> None:
        await self.inner.flush()

    # writes: Milvus first, then the index (which must never hold what Milvus refused)

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        await self.inner.upsert(rows)
        if self._index is not None and rows:
            await anyio.to_thread.run_sync(self._index.upsert, [_entry(r, v) for r, v in rows])

    async def delete(self, ids: list[str]) -> None:
        await self.inner.delete(ids)
        if self._index is not None and ids:
            await anyio.to_thread.run_sync(self._index.delete, ids)

    # reads

    def answers(self, where: And) -> bool:
        """Whether a search with this filter is answered by the index (else Milvus must be open)."""
        return self._index is not None and scope_only(where) is not None

    async def search(self, vector: list[float], where: And, limit: int) -> list[tuple[MemoryRecord, float]]:
        scope = scope_only(where)
        if self._index is None or scope is None:
            return await self.inner.search(vector, where, limit)
        return await self._records(await anyio.to_thread.run_sync(self._index.search, vector, scope, limit))

    async def search_keywords(self, text: str, where: And, limit: int) -> list[tuple[MemoryRecord, float]]:
        scope = scope_only(where)
        if self._index is None or scope is None:
            return await self.inner.search_keywords(text, where, limit)
        words = analyse(text)
        if not words:
            return []
        return await self._records(await anyio.to_thread.run_sync(self._index.search_words, words, scope, limit))

    async def _records(self, hits: Hits) -> list[tuple[MemoryRecord, float]]:
        records = await self._history.get_many([memory_id for memory_id, _ in hits])
        return [
            (record, score)
            for memory_id, score in hits
            if (record := records.get(memory_id)) is not None and record.deleted_at is None
        ]

    async def get(self, ids: list[str]) -> list[MemoryRecord]:
        return await self.inner.get(ids)

    async def ids(self) -> list[str]:
        return await self.inner.ids()
