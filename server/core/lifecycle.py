"""Opening and closing the stores and the model: once, in order, reads served as early as they can be.

`ready()` opens everything: SQLite, the model, the vector store (rebuilt from SQLite when its
schema is stale), then re-applies changes an earlier run left pending. A failure is raised to the
caller and retried on the next call. Where the vector store can answer searches before it is
fully open (Milvus Lite with the search index), `ready_for_reads()` opens only that and lets the
rest open in the background (`warm_up`, which then checks the stored keyword text:
core/keyword_check.py). `close()` flushes what is still queued and closes the
stores. docs/ARCHITECTURE.md, "Start-up and shutdown".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from milvus_memory_mcp.core.keyword_check import check_keyword_text
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.errors import BackendError, ConfigurationError, MemoryServiceError
from milvus_memory_mcp.heap import release_free_memory
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Store
from milvus_memory_mcp.stores.identity import switched_message

logger = logging.getLogger(__name__)

MILVUS_OPEN_DELAY = 1.0  # seconds between reads being served and the vector store opening in the background


@dataclass
class Lifecycle:
    settings: Settings
    history: HistoryStore
    vectors: Store
    embedder: Embedder
    writes: WriteProtocol
    owns_embedder: bool = True  # then the model is closed with the stores
    is_ready: bool = field(default=False, init=False)
    _readable: bool = field(default=False, init=False)  # reads can be served (before `is_ready`, with the index)
    _warming: bool = field(default=False, init=False)
    _sweeping: bool = field(default=False, init=False)
    _selected: bool = field(default=False, init=False)  # the active collection is chosen
    _refused: bool = field(default=False, init=False)  # the vector store refused to open: reads wait for it too
    _lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)
    _tg: TaskGroup | None = field(default=None, init=False)

    def attach(self, tg: TaskGroup) -> None:
        """The task group background opening runs in (the service's)."""
        self._tg = tg

    async def close(self) -> None:
        """Flush what the vector store still holds unflushed, close the stores, then the model if
        it is ours (shielded from cancellation)."""
        self._tg = None
        with anyio.CancelScope(shield=True):
            try:
                if self.is_ready and self.vectors.needs_flush:
                    await self.writes.flush()
            except BackendError:
                logger.warning("final flush failed; the pending marks are re-applied at the next start")
            finally:
                self.is_ready = self._readable = False
                await self.vectors.close()
                await self.history.close()
                if self.owns_embedder:
                    await self.embedder.close()

    def warm_up(self) -> None:
        """Open the stores and the model in the background (after the MCP handshake)."""
        if self._tg is not None and self.settings.history_url and not self._sweeping:
            self._sweeping = True  # a served process on a shared history: replay what dead replicas left
            self._tg.start_soon(self._sweep)
        if self._tg is not None and not self.is_ready and not self._warming:
            self._warming = True
            self.embedder.start()
            self._tg.start_soon(self._warm_up)

    async def _sweep(self) -> None:
        """Every `pending_sweep` seconds, once the stores are open: re-apply the marks of writes a
        process that died left pending (under the cluster lock, so one replica replays each)."""
        while True:
            await anyio.sleep(self.settings.pending_sweep)
            if not self.is_ready or self.vectors.needs_flush:  # Milvus Lite is one process's file
                continue
            try:
                await self.writes.replay_orphans()
            except MemoryServiceError as e:
                logger.warning("pending sweep failed: %s", e)

    async def _warm_up(self) -> None:
        try:
            if await self._open_reads():
                # The vector store is needed by the first write only: let a first search run without it first.
                await anyio.sleep(MILVUS_OPEN_DELAY)
            await self.ready()
        except MemoryServiceError as e:
            logger.error("warm-up failed: %s", e)
            return
        finally:
            self._warming = False
        try:
            if await check_keyword_text(self.history, self.vectors, self.writes.lock) is not None:
                await anyio.to_thread.run_sync(release_free_memory)  # the rows it read
        except MemoryServiceError as e:
            logger.warning("could not check the stored keyword text: %s", e)

    async def ready(self, *, apply_pending: bool = True) -> None:
        """Open everything once. Changes recorded but not applied by an earlier run are re-applied
        first, unless `apply_pending` is false (`doctor` reports them instead)."""
        if self.is_ready:
            return
        async with self._lock:
            if self.is_ready:
                return
            await self._select_collection()
            await self.embedder.open()
            # Under the write lock: on a shared history another replica may be creating the collection
            # (Milvus refuses a second index on one being loaded) or have a write in flight.
            async with self.writes.lock:
                try:
                    await self.vectors.open(self.embedder.model_id, self.embedder.dimensions)
                except ConfigurationError:
                    # Not this store's collection, or not this embedder's: searches served early (from
                    # the search index) stop too, and every call says why until it opens.
                    self._readable, self._refused = False, True
                    raise
                self._refused = False
                if self.vectors.stale_schema:
                    await self._rebuild_collection()
                pending = await self.history.pending_ids()
                if pending and apply_pending:
                    logger.warning("re-applying %d change(s) left unfinished by an earlier run", len(pending))
                    await self.writes.reconcile(pending)
                    await self.writes.flush_and_settle()
            self.is_ready = self._readable = True
            if self.settings.history_url:
                self.writes.lock.guard = self._same_embedder
            self.writes.request_flush()  # so that the store hears `idle` if no write comes
            await anyio.to_thread.run_sync(release_free_memory)
            logger.info("memory store ready (%s)", self.settings.resolved_milvus_uri)

    async def _same_embedder(self) -> None:
        """On a shared history, refuse a write once another process (a replica) has switched the
        store to another embedder with `reembed`: this one still writes the old collection's vectors."""
        active = (await self.history.store_state()).get("active_model")
        if self.is_ready and active and active != self.embedder.model_id:
            raise ConfigurationError(switched_message(active, changed=True))

    async def _open_reads(self) -> bool:
        """Open what reads need; False when the vector store needs `ready()` before searching."""
        if self._readable:
            return True
        async with self._lock:
            if not self._readable and not self._refused:
                await self._select_collection()
                await self.embedder.open()
                self._readable = await self.vectors.open_reads(self.embedder.model_id, self.embedder.dimensions)
                if self._readable:
                    await anyio.to_thread.run_sync(release_free_memory)  # the rows the index was built from
        return self._readable

    async def _select_collection(self) -> None:
        """Open SQLite, and have the vector store open the collection `reembed` made active, if any."""
        await self.history.open()
        if not self._selected:
            if active := (await self.history.store_state()).get("active"):
                self.vectors.use_collection(active)
            self._selected = True

    async def ready_for_reads(self) -> None:
        """Open what reads need; the rest opens in the background."""
        if self.is_ready:
            return
        if await self._open_reads():
            self.warm_up()
        else:
            await self.ready()

    async def _rebuild_collection(self) -> None:
        """Move a collection made before keyword search to the current schema, refilled from SQLite.

        Every live memory is marked pending first, so a crash midway is finished at the next start.
        """
        ids = await self.history.live_ids()
        logger.warning(
            "collection %r predates keyword search: rebuilding it from the history database (%d memories)",
            self.settings.collection,
            len(ids),
        )
        await self.history.mark_pending(ids)
        await self.vectors.recreate(self.embedder.model_id, self.embedder.dimensions)
