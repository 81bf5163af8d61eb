"""The write protocol: every change reaches SQLite first, then the vector store, and never half.

docs/ARCHITECTURE.md ("The write protocol") tells the whole story; in short:
1. Under `lock`, the new state, its history row, a pending mark and the new texts' embeddings are
   committed to SQLite in one transaction (`apply`).
2. The change is applied to the vector store, idempotently by id, shielded from cancellation.
3. On a Milvus server, the store's timestamp after the write (`write_ts`) is recorded in the history
   store, for the collection and for the scope terms of the memories changed, where every process's
   searches read it (read-your-writes; stores/milvus_client.py).
4. The pending mark is cleared once the vector store has made the change durable: at once, or
   (stores whose `needs_flush`) after the debounced `flush`, by the ids `take_durable` reports.
If the vector store fails, SQLite is reverted and the memory reconciled; marks left by a crash
are re-applied at the next start (`reconcile`, from server/core/lifecycle.py), ids this process
could not settle at the next write. With a shared history (PostgreSQL, several replicas) `lock` is
also the history's cluster-wide write lock, and `replay_orphans` (run by each replica's sweep)
re-applies the marks a dead replica left.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import anyio

from milvus_memory_mcp.embedders import Embedder, Signed, signature
from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import Change, HistoryEntry, MemoryRecord, scope_terms
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import VectorStore

logger = logging.getLogger(__name__)

APPLY_CHUNK = 500  # changes per vector store call
# Seconds without a flush after which the store may give back memory that writes use (on Lite the
# collection, read again by the next flush: not between the batches of an import).
IDLE_AFTER = 2.0


class WriteLock:
    """The process's lock, then the history's cluster-wide write lock (a no-op on SQLite):
    `async with writes.lock` serialises a write against every other writer of the collection."""

    def __init__(self, history: HistoryStore) -> None:
        self._local = anyio.Lock()
        self._history = history
        self._held: AbstractAsyncContextManager[None] | None = None
        self.guard: Callable[[], Awaitable[None]] | None = None  # checked once the lock is held; may refuse

    async def __aenter__(self) -> None:
        await self._local.acquire()
        try:
            cluster = self._history.write_lock()
            await cluster.__aenter__()
        except BaseException:
            self._local.release()
            raise
        self._held = cluster
        if self.guard is not None:
            try:
                await self.guard()
            except BaseException as e:
                await self.__aexit__(type(e), e, e.__traceback__)
                raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        cluster, self._held = self._held, None
        try:
            if cluster is not None:
                with anyio.CancelScope(shield=True):
                    await cluster.__aexit__(kind, exc, tb)
        finally:
            self._local.release()


class WriteProtocol:
    def __init__(self, settings: Settings, history: HistoryStore, vectors: VectorStore, embedder: Embedder) -> None:
        self.settings = settings
        self._history = history
        self._vectors = vectors
        self._embedder = embedder
        self.lock = WriteLock(history)  # held by every write, from reading the old state to `apply`
        self._unsettled: set[str] = set()  # ids whose marks could not be settled; retried on the next write
        self._noted_ts = 0  # the vector store's `write_ts` last recorded in the history store
        # Scope terms of writes whose timestamp is not recorded yet (None: unknown, recorded as "*")
        self._unnoted: set[str] | None = set()
        self._flush_send, self._flush_recv = anyio.create_memory_object_stream[None](1)

    async def current(self, texts: list[str], signed: Signed) -> list[list[float]]:
        """The vectors of `texts` by the embedder in use; the caller holds `lock`. `signed`'s, when
        the embedder that made them is still in use; else the texts are embedded again: a write
        embeds before it takes the lock, and `reembed` switches the embedder under it."""
        if signed.made_by == signature(self._embedder):
            return signed.vectors
        logger.info("the embedder was switched while %d text(s) were embedded; embedding them again", len(texts))
        return await self._embedder.embed(texts) if texts else []

    # applying changes

    async def apply(self, changes: list[Change]) -> None:
        """Record `changes` in SQLite (one transaction), apply them to the vector store, clear the marks.

        The caller holds `lock`, and the stores are open. Once SQLite has committed, the rest runs
        shielded from cancellation so that a cancelled call cannot leave the stores apart; a crash
        in between is repaired at the next start (the pending marks). All changes commit together,
        so a `delete_all` is all or nothing even when the vector store gets it in chunks.
        """
        if not changes:
            return
        await self._settle()
        ids = [c.new.id for c in changes]
        try:
            await self._history.commit(changes, self._embedder.model_id)
        except BackendError as e:
            if not await self._recorded(changes, e):
                raise type(e)(f"{e} Nothing was changed.") from e
            logger.warning("the history reported a failed commit that is recorded (%s); applying it", e)
        self._unsettled.update(ids)  # until the vector store holds the changes (or SQLite is reverted)
        with anyio.CancelScope(shield=True):
            try:
                await self._write_through([(c.new, c.vector) for c in changes])
            except BackendError as e:
                await self._undo(changes, e)
            self._unsettled.difference_update(ids)
            await self._applied(ids, [c.new for c in changes])

    async def _recorded(self, changes: list[Change], failure: BackendError) -> bool:
        """Whether a commit that raised `failure` is recorded all the same (a connection lost while
        PostgreSQL answered COMMIT): its history events are there. When that cannot be read either,
        the ids stay unsettled (the next write, or the sweep, makes the vector store match what was
        recorded) and the call is told that the outcome is unknown."""
        try:
            return bool(await self._history.event_owners([c.history.id for c in changes]))
        except BackendError:
            self._unsettled.update(c.new.id for c in changes)
            raise type(failure)(
                f"{failure} It is not known whether the change was recorded: the vector store is brought in "
                "line with what was by the next write (or within MEMORY_PENDING_SWEEP seconds on a shared "
                "history). Check with get_memory or list_memories before retrying."
            ) from failure

    async def apply_imported(self, items: list[tuple[MemoryRecord, list[HistoryEntry], list[float] | None]]) -> None:
        """Record imported memories with their histories as they were (one transaction), then apply
        them to the vector store; the caller holds `lock`. A vector store failure leaves them
        recorded and marked: completed by the next write or start, or by importing again."""
        if not items:
            return
        await self._settle()
        try:
            await self._history.import_records(items, self._embedder.model_id)
        except BackendError as e:
            raise type(e)(f"{e} Nothing of this batch was imported.") from e
        ids = [r.id for r, _, _ in items]
        self._unsettled.update(ids)
        with anyio.CancelScope(shield=True):
            try:
                await self._write_through([(r, v) for r, _, v in items])
            except BackendError as e:
                raise BackendError(f"{e} The batch was recorded; it reaches the vector store later.") from e
            self._unsettled.difference_update(ids)
            await self._applied(ids, [r for r, _, _ in items])

    async def _write_through(self, states: list[tuple[MemoryRecord, list[float] | None]]) -> None:
        """New states to the vector store, APPLY_CHUNK at a time: live ones upserted with their
        vector, deleted ones removed."""
        for start in range(0, len(states), APPLY_CHUNK):
            chunk = states[start : start + APPLY_CHUNK]
            await self._vectors.upsert([(r, v) for r, v in chunk if v is not None and r.deleted_at is None])
            await self._vectors.delete([r.id for r, _ in chunk if r.deleted_at is not None])

    async def _undo(self, changes: list[Change], cause: BackendError) -> None:
        """Put SQLite back as it was and make the vector store match it; always raises."""
        ids = [c.new.id for c in changes]
        try:
            await self._history.revert(changes)
        except BackendError:
            # SQLite keeps the new state and its marks, so the change is completed later (the next
            # write, `doctor --repair` or the next start): it is recorded but not confirmed.
            logger.exception("could not revert the history database after a vector store failure")
            raise BackendError(
                f"{cause} The change was recorded but not confirmed; it is completed once the vector store "
                "works again. Check with get_memory or list_memories before retrying."
            ) from cause
        try:
            await self.reconcile(ids)
            self._unsettled.difference_update(ids)
        except BackendError:
            logger.warning("vector store still failing; %d memory id(s) are re-checked later", len(ids))
        raise BackendError(f"{cause} Nothing was changed; try again.") from cause

    async def _applied(self, ids: list[str], records: list[MemoryRecord] | None) -> None:
        """The vector store holds these changes: record its timestamp for every process's searches
        (read-your-writes on a Milvus server), and clear their marks now, or after the next flush."""
        await self._note_ts(records)
        if self._vectors.needs_flush:
            self._request_flush()
        else:
            await self._clear(ids)

    async def _note_ts(self, records: list[MemoryRecord] | None) -> None:
        """Record the store's timestamp for the collection and the scopes of `records` (None: unknown)."""
        if not (ts := self._vectors.write_ts):
            return  # no server clock (Milvus Lite)
        if self._unnoted is not None:
            if records is None:
                self._unnoted = None
            else:
                self._unnoted.update(scope_terms(p for r in records for p in r.scope.items()))
        if ts <= self._noted_ts:
            return
        try:
            await self._history.note_vector_ts(ts, None if self._unnoted is None else sorted(self._unnoted))
            self._noted_ts, self._unnoted = ts, set()
        except BackendError:
            # This process still searches after its own writes; others may miss them until the next write.
            logger.warning("could not record the vector store's timestamp; it is recorded at the next write")

    async def _clear(self, ids: list[str]) -> None:
        # Rows the vector store refused (logged there) keep their marks: retried at start, reported by doctor.
        ids = [i for i in ids if i not in self._vectors.refused]
        try:
            await self._history.clear_pending(ids)
        except BackendError:
            # Harmless: both stores hold the change; the marks are re-applied (idempotently) later.
            logger.warning("could not clear %d pending mark(s); they are re-checked later", len(ids))
            self._unsettled.update(ids)

    async def _settle(self) -> None:
        """Retry ids left unsettled by an earlier failure in this process (caller holds `lock`)."""
        if not self._unsettled:
            return
        ids = sorted(self._unsettled)
        try:
            await self.reconcile(ids)
        except BackendError as e:
            logger.warning("%d memory id(s) still unsettled: %s", len(ids), e)
            return
        self._unsettled.difference_update(ids)

    async def reconcile(self, ids: list[str]) -> None:
        """Make the vector store match SQLite's record for these ids, then clear their marks.

        Idempotent: a memory SQLite holds live is upserted (with its stored embedding, else
        re-embedded), any other id deleted.
        """
        for start in range(0, len(ids), APPLY_CHUNK):
            chunk = ids[start : start + APPLY_CHUNK]
            records = await self._history.get_many(chunk)
            live = [r for r in records.values() if r.deleted_at is None]
            dead = [i for i in chunk if i not in records or records[i].deleted_at is not None]
            if live:
                await self._vectors.upsert(list(zip(live, await self._vectors_for(live), strict=True)))
            await self._vectors.delete(dead)
            await self._applied(chunk, list(records.values()) if len(records) == len(chunk) else None)

    async def _vectors_for(self, records: list[MemoryRecord]) -> list[list[float]]:
        """The embeddings of these memories' texts: stored ones from SQLite, the rest computed."""
        model, dims = signature(self._embedder)
        stored = await self._history.embeddings(model, dims, [r.hash for r in records])
        if missing := [r for r in records if r.hash not in stored]:
            computed = list(zip(missing, await self._embedder.embed([r.memory for r in missing]), strict=True))
            stored.update((r.hash, v) for r, v in computed)
            try:
                await self._history.save_embeddings(model, [(r.hash, r.memory, v) for r, v in computed])
            except BackendError:
                logger.warning("could not store %d embedding(s); they are computed again when needed", len(computed))
        return [stored[r.hash] for r in records]

    async def replay_orphans(self) -> int:
        """Re-apply the pending marks no write in flight explains (a shared history's sweep): under
        the cluster lock no other write is in flight, so each mark seen there was left by a process
        that died (or could not settle it). How many were re-applied."""
        if not self._unsettled and not await self._history.pending_ids():
            return 0  # the common case, without taking the lock
        async with self.lock:
            await self._settle()
            ids = [i for i in await self._history.pending_ids() if i not in self._vectors.refused]
            if ids:
                logger.warning("re-applying %d change(s) left pending by another process", len(ids))
                await self.reconcile(ids)
            return len(ids)

    async def resync(self, ids: list[str]) -> None:
        """Make the vector store match SQLite's record for `ids` (`doctor --repair`); stores open."""
        async with self.lock:
            await self.reconcile(ids)
            self._unsettled.difference_update(ids)

    # flushing (stores whose writes are durable only after a flush: Milvus Lite)

    async def run_flusher(self) -> None:
        """The background task that flushes `flush_delay` seconds after a write asked for it, and
        tells the store when IDLE_AFTER seconds have passed since without another (`idle`)."""
        async for _ in self._flush_recv:
            more = True
            while more:
                await anyio.sleep(self.settings.flush_delay)
                await self._flush_in_background()
                more = False
                with anyio.move_on_after(IDLE_AFTER):
                    try:
                        await self._flush_recv.receive()
                    except anyio.EndOfStream:
                        return
                    more = True
            try:
                await self._vectors.idle()
            except BackendError as e:
                logger.warning("could not release the vector store's memory: %s", e)

    async def _flush_in_background(self) -> None:
        try:
            await self._vectors.prepare_flush()  # not under `lock`: writes go on meanwhile
        except BackendError as e:
            logger.warning("could not prepare the flush: %s", e)
        # Shielded: a flush cut short at shutdown would leave the marks of what it made durable
        # (re-applied, needlessly, at the next start).
        with anyio.CancelScope(shield=True):
            try:
                await self.flush()
            except BackendError as e:
                logger.warning("flush failed: %s", e)

    async def flush(self) -> None:
        """Flush the vector store and clear the pending marks of the writes it made durable."""
        async with self.lock:
            await self.flush_and_settle()

    async def flush_and_settle(self) -> None:
        if not self._vectors.needs_flush:
            return
        try:
            await self._vectors.flush()
        except BackendError:
            # What was not durable is lost on Milvus Lite: re-applied from SQLite by the next write or start.
            try:
                self._unsettled.update(await self._history.pending_ids())
            except BackendError:
                logger.warning("could not read the pending marks; they are re-applied at the next start")
            raise
        if (
            settled := self._vectors.take_durable() - self._unsettled
        ):  # an unsettled id's mark covers a later, unapplied change
            await self._clear(sorted(settled))

    def request_flush(self) -> None:
        """A flush soon, then `idle` once no write has come for IDLE_AFTER seconds (after opening)."""
        if self._vectors.needs_flush:
            self._request_flush()

    def _request_flush(self) -> None:
        try:
            self._flush_send.send_nowait(None)
        except anyio.WouldBlock:
            pass  # a flush is already due
