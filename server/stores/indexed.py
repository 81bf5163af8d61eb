"""Milvus Lite with its searches answered by an in-memory `SearchIndex` where they can be.

Milvus Lite 3.2.2 stores every memory; searches are answered by `server.search_index`. A search
with filters beyond its scope (metadata, times) is confined to the ids SQLite finds for the same
filter. The index is built at open from the history database (each text's embedding is stored
there with its state; rows written before that are filled in once from Milvus) and follows every
write SQLite committed.

Writes reach Milvus behind the index (write-behind): `upsert` and `delete` update the index and
queue the Milvus call, which runs in order at the next `flush` (the service's debounced flush),
or before anything that reads Milvus itself. SQLite has committed each write, with its pending
mark, before it gets here, and the mark is cleared only once a flush has made the Milvus side
durable: a Milvus failure or a crash leaves the mark, and the service re-applies the change from
SQLite (at its next write, or at the next start). This takes Milvus Lite's ~3.5 ms upsert out of
every `add_memory`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.filters import And, scope_only
from milvus_memory_mcp.keywords import analyse, memory_words, words_with_context
from milvus_memory_mcp.records import MemoryRecord, Scope

if TYPE_CHECKING:  # numpy is imported after the MCP handshake, with the index
    from milvus_memory_mcp.history import Embedded, HistoryStore
    from milvus_memory_mcp.search_index import Entry, Hits, SearchIndex
    from milvus_memory_mcp.stores import Store
    from milvus_memory_mcp.stores.identity import StoreIdentity

logger = logging.getLogger(__name__)

BACKFILL_CHUNK = 1000
CONFINED_KEPT = 32  # filter answers kept between writes
MERGED_ROWS = 500  # rows per Milvus call when queued writes are merged
MAP_AFTER_REBUILD = 20_000  # memories from which a rebuilt index is saved and mapped at once (_map_rebuilt)


def _entry(record: MemoryRecord, vector: list[float]) -> Entry:
    import numpy as np

    from milvus_memory_mcp.search_index import Entry

    return Entry(record.id, record.scope, np.asarray(vector, dtype=np.float32), memory_words(record))


@dataclass(frozen=True)
class _Queued:
    """A Milvus write made later: rows to upsert, or ids to delete."""

    kind: Literal["upsert", "delete"]
    items: list[Any]


class _Confined:
    """The ids matching a filter, once SQLite has answered (None if it failed)."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ids: list[str] | None = None


class IndexedStore:
    def __init__(
        self, inner: Store, history: HistoryStore, saved: Path | None = None, identity: StoreIdentity | None = None
    ) -> None:
        self.inner = inner
        self._history = history
        self._identity = identity  # whether searches may be served before Milvus opens (`open_reads`)
        self._saved = saved  # where the index is saved at close and loaded at open (server/index_file.py)
        self._index: SearchIndex | None = None
        self._model = ""
        self._unsaved = False  # the index differs from the saved one
        self._generation = 0  # counts writes: filter answers are kept for one generation
        self._confined: dict[tuple[int, And], _Confined] = {}
        self._behind: list[_Queued] = []  # Milvus writes not made yet, in order
        self._drain_lock = anyio.Lock()

    # what the wrapped store says

    @property
    def keyword_search(self) -> bool:
        # The index has BM25 (so has Milvus Lite 3.2.2, which answers until the index is built).
        return self._index is not None or self.inner.keyword_search

    @property
    def stale_schema(self) -> bool:
        return self.inner.stale_schema

    @property
    def needs_flush(self) -> bool:
        return self.inner.needs_flush

    @property
    def refused(self) -> dict[str, str]:
        return self.inner.refused

    @property
    def write_ts(self) -> int:
        return self.inner.write_ts

    async def vectors_of(self, ids: list[str]) -> dict[str, list[float]]:
        await self.drain()
        return await self.inner.vectors_of(ids)

    # lifecycle

    async def open(self, model_id: str, dimensions: int) -> None:
        await self.inner.open(model_id, dimensions)
        if self._index is None and not await self._load_saved(model_id):
            self._index = await self._load(model_id, dimensions)
            self._unsaved = True
            await self._map_rebuilt(model_id)
        await self._history.prune_embeddings()

    async def open_reads(self, model_id: str, dimensions: int) -> bool:
        """Load the saved index or build it from the history database alone, before Milvus opens;
        False when some embeddings must first be read from Milvus (a database written before they
        were stored), or when a shared history feeds other vectors than this Lite file's (`open` decides
        whether they are this store's: stores/identity.py)."""
        if self._identity is not None and not await self._identity.readable_here():
            return False
        if self._index is None and not await self._load_saved(model_id):
            rows = await self._history.live_embeddings(model_id, dimensions)
            if any(r.vector is None for r in rows):
                return False
            self._index = await self._load(model_id, dimensions, rows)
            self._unsaved = True
            await self._map_rebuilt(model_id)
        return True

    async def _load_saved(self, model_id: str) -> bool:
        """The index saved at the last clean close, if the history has not changed since."""
        from milvus_memory_mcp import index_file

        self._model = model_id
        if self._saved is None:
            return False
        mark = await self._history.index_mark(model_id)
        self._index = await anyio.to_thread.run_sync(index_file.load, self._saved, mark)
        return self._index is not None

    async def _map_rebuilt(self, model_id: str) -> None:
        """Save a large index just rebuilt (no write can run yet: called while opening) and map it
        back, so that its vectors cost what a loaded index's do (at 100k: 747 MB after a first write
        when kept as built, 536 MB when loaded). Kept as built when it cannot be saved."""
        if self._index is None or len(self._index) < MAP_AFTER_REBUILD:
            return
        await self._save()
        built = self._index
        if self._unsaved or not await self._load_saved(model_id):
            self._index, self._unsaved = built, True

    async def _save(self) -> None:
        from milvus_memory_mcp import index_file

        if self._saved is None or self._index is None or not self._unsaved:
            return
        try:
            if await self._history.pending_ids():
                # Changes recorded in SQLite but maybe not in the index (re-applied at the next start):
                # the index may not be the database's, so the next start rebuilds it.
                await anyio.to_thread.run_sync(index_file.remove, self._saved)
                return
            mark = await self._history.index_mark(self._model)
            await anyio.to_thread.run_sync(index_file.save, self._index, self._saved, mark)
            self._unsaved = False
        except (OSError, BackendError) as e:  # a cache: the next start rebuilds it
            logger.warning("could not save the search index to %s: %s", self._saved, e)

    async def _load(self, model_id: str, dimensions: int, rows: list[Embedded] | None = None) -> SearchIndex:
        import numpy as np

        from milvus_memory_mcp.search_index import Entry, SearchIndex

        if rows is None:
            rows = await self._history.live_embeddings(model_id, dimensions)
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
                words_with_context(r.words if r.words is not None else analyse(r.memory), r.context),
            )
            for r in rows
            if r.vector is not None or r.id in found  # the others are pending: re-applied after open
        ]
        index = await anyio.to_thread.run_sync(SearchIndex.build, dimensions, entries)
        logger.info("search index ready: %d memories", len(index))
        return index

    async def close(self) -> None:
        if self._behind:  # the flush at close failed: their pending marks re-apply them at the next start
            logger.warning("%d Milvus write(s) not applied at close; re-applied at the next start", len(self._behind))
            self._behind.clear()
        await self._save()
        self._index = None
        await self.inner.close()

    def use_collection(self, name: str) -> None:
        """Another collection from the next `open` (the caller has flushed): the index is rebuilt then."""
        self._behind.clear()
        self._index = None
        self._changed()
        self.inner.use_collection(name)

    async def sibling(self, collection: str, model_id: str, dimensions: int) -> Store:
        await self.drain()
        return await self.inner.sibling(collection, model_id, dimensions)

    async def has_collection(self, name: str) -> bool:
        return await self.inner.has_collection(name)

    async def drop_collection(self, name: str) -> None:
        await self.inner.drop_collection(name)

    async def recreate(self, model_id: str, dimensions: int) -> None:
        self._behind.clear()  # every memory is marked pending first and re-applied afterwards
        await self.inner.recreate(model_id, dimensions)

    async def prepare_flush(self) -> None:
        if self._behind:
            await self.inner.prepare_flush()

    async def idle(self) -> None:
        if not self._behind:
            await self.inner.idle()

    async def flush(self) -> None:
        await self.drain()
        await self.inner.flush()

    def take_durable(self) -> set[str]:
        return self.inner.take_durable()

    async def drain(self) -> None:
        """Make the queued Milvus writes, in order; one that fails stays queued with those after it.

        Consecutive writes of one kind go in one call (up to MERGED_ROWS rows; of an id upserted
        twice the later row), so a burst of adds costs Milvus Lite one upsert. A row whose data
        Milvus refuses does not fail the merged call: the store splits it and skips that row
        (`refused`; its pending mark stays)."""
        async with self._drain_lock:
            while self._behind:
                kind, n, rows = self._behind[0].kind, 1, len(self._behind[0].items)
                while n < len(self._behind) and self._behind[n].kind == kind and rows < MERGED_ROWS:
                    rows += len(self._behind[n].items)
                    n += 1
                run = self._behind[:n]
                if kind == "upsert":
                    await self.inner.upsert(list({r.id: (r, v) for q in run for r, v in q.items}.values()))
                else:
                    await self.inner.delete(list(dict.fromkeys(i for q in run for i in q.items)))
                del self._behind[:n]

    # writes: the index now, Milvus at the next flush

    def _changed(self) -> None:
        self._generation += 1
        self._unsaved = True
        self._confined.clear()

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        if not rows:
            return
        self._changed()  # SQLite has changed: kept filter answers are stale
        if self._index is None:
            await self.drain()
            await self.inner.upsert(rows)
            return
        self._behind.append(_Queued("upsert", rows))
        await anyio.to_thread.run_sync(self._index.upsert, [_entry(r, v) for r, v in rows])

    async def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        self._changed()
        if self._index is None:
            await self.drain()
            await self.inner.delete(ids)
            return
        self._behind.append(_Queued("delete", ids))
        await anyio.to_thread.run_sync(self._index.delete, ids)

    # reads

    async def _confine(self, where: And) -> tuple[Scope, list[str] | None]:
        """The scope to search and, for a filter beyond the scope, the ids SQLite says match it (the
        same `filters` semantics as Milvus, tested against it).

        A hybrid search asks twice at once (dense and keyword): one query answers both, and its
        answer is kept until the next write."""
        scope = scope_only(where)
        if scope is not None:
            return scope, None
        key = (self._generation, where)
        entry = self._confined.get(key)
        if entry is None:
            if len(self._confined) >= CONFINED_KEPT:
                self._confined.clear()
            entry = self._confined[key] = _Confined()
            try:
                entry.ids = await self._history.live_ids(where)
            finally:
                entry.done.set()
        else:
            await entry.done.wait()
        if entry.ids is None:  # the query that would have answered failed: ask again
            return Scope(), await self._history.live_ids(where)
        return Scope(), entry.ids

    async def search(self, vector: list[float], where: And, limit: int) -> list[tuple[MemoryRecord, float]]:
        if self._index is None:
            await self.drain()
            return await self.inner.search(vector, where, limit)
        scope, among = await self._confine(where)
        hits = await anyio.to_thread.run_sync(self._index.search, vector, scope, limit, among)
        return await self._records(hits, None if among is None else where)

    async def search_keywords(self, text: str, where: And, limit: int) -> list[tuple[MemoryRecord, float]]:
        if self._index is None:
            await self.drain()
            return await self.inner.search_keywords(text, where, limit)
        words = analyse(text)
        if not words:
            return []
        scope, among = await self._confine(where)
        hits = await anyio.to_thread.run_sync(self._index.search_words, words, scope, limit, among)
        return await self._records(hits, None if among is None else where)

    async def _records(self, hits: Hits, where: And | None) -> list[tuple[MemoryRecord, float]]:
        """The hits' memories as SQLite holds them now; with `where` (a filter beyond the scope), only
        those that still match it: a write may have changed one since `_confine` read the ids."""
        records = await self._history.get_many([memory_id for memory_id, _ in hits], where)
        return [
            (record, score)
            for memory_id, score in hits
            if (record := records.get(memory_id)) is not None and record.deleted_at is None
        ]

    async def get(self, ids: list[str]) -> list[MemoryRecord]:
        await self.drain()
        return await self.inner.get(ids)

    async def ids(self) -> list[str]:
        await self.drain()
        return await self.inner.ids()

    @property
    def ranks_by_stored_keywords(self) -> bool:
        return False  # the index ranks, built from SQLite with this release's analysis

    async def stale_keywords(self, records: list[MemoryRecord]) -> list[str]:
        await self.drain()
        return await self.inner.stale_keywords(records)
