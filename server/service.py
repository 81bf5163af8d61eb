"""MemoryService: the one async core behind every tool.

It is the only place that orchestrates embed -> store -> history. Writes follow the protocol of
DESIGN.md ("two stores, one truth"): the new state, its history row and a pending mark are
committed to SQLite in one transaction, then applied to Milvus idempotently by id, then the mark
is cleared. If Milvus fails, the SQLite change is reverted and the memory reconciled; marks left
by a crash are re-applied when the service opens, before the first call is served.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskGroup

from . import filters, ranking
from .embedders import Embedder, make_embedder
from .errors import BackendError, InferenceError, InvalidInput, MemoryServiceError, PermissionDenied, not_found
from .heap import release_free_memory
from .history import SQLiteHistory
from .inference import ChatModel, make_llm
from .models import (
    AddEvent,
    AddResult,
    DeleteAllResult,
    DeleteResult,
    HistoryEvent,
    HistoryResult,
    ListResult,
    MemoryItem,
    SearchHit,
    SearchResult,
)
from .records import ANONYMOUS, Caller, Change, HistoryEntry, MemoryRecord, Scope, now_us, text_hash
from .settings import Settings
from .stores import VectorStore
from .validation import check_limit, check_memory_id, check_metadata, check_scope, check_text

if TYPE_CHECKING:
    from .inference.reconcile import Action
    from .stores.indexed import IndexedStore

logger = logging.getLogger(__name__)

MAX_SEARCH_LIMIT = 100
MAX_LIST_LIMIT = 1000
# Each search of a hybrid query fetches this many candidates (at least `limit`) before fusing.
FUSION_CANDIDATES = 20
APPLY_CHUNK = 500
ROLES = ("user", "assistant", "system")
CANDIDATES_PER_FACT = 5  # similar stored memories shown to the LLM for each new fact
MILVUS_OPEN_DELAY = 1.0  # seconds between reads being served and Milvus opening in the background


@dataclass(frozen=True)
class Message:
    role: str | None
    content: str


class MemoryService:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        vectors: VectorStore | None = None,
        history: SQLiteHistory | None = None,
        llm: ChatModel | None = None,
    ) -> None:
        self.settings = settings
        self._indexed: IndexedStore | None = None  # Milvus Lite with the search index: reads need no Milvus
        self._owns_embedder = embedder is None
        self.embedder = embedder or make_embedder(settings)
        self.llm = llm or make_llm(settings)
        self.history = history or SQLiteHistory(settings.resolved_history_path, settings.collection)
        if vectors is None:
            from .stores.milvus import MilvusStore

            milvus = MilvusStore(
                settings.resolved_milvus_uri,
                settings.collection,
                settings.milvus_token,
                db_name=settings.milvus_db_name,
                timeout=settings.milvus_timeout,
                num_partitions=settings.milvus_num_partitions,
            )
            if milvus.capabilities.lite and settings.search_index:
                from .stores.indexed import IndexedStore

                vectors = self._indexed = IndexedStore(milvus, self.history)
            else:
                vectors = milvus
        self.vectors: VectorStore = vectors
        self._open_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._ready = False
        self._readable = False  # reads can be served (before `_ready` with the search index)
        self._warming = False
        self._unsettled: set[str] = set()  # ids whose marks could not be settled; retried on the next write
        self._unflushed: set[str] = set()  # ids written to Milvus Lite since its last flush
        self._tg: TaskGroup | None = None
        self._flush_send, self._flush_recv = anyio.create_memory_object_stream[None](1)

    # lifecycle

    async def __aenter__(self) -> MemoryService:
        self._tg = await anyio.create_task_group().__aenter__()
        self._tg.start_soon(self._flusher)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None
        with anyio.CancelScope(shield=True):
            if self._ready and self.vectors.needs_flush:
                try:
                    await self.flush()
                except BackendError:
                    logger.warning("final flush failed; the pending marks are re-applied at the next start")
            await self.vectors.close()
            await self.history.close()
            if self._owns_embedder:
                await self.embedder.close()
            self._ready = self._readable = False

    def warm_up(self) -> None:
        """Open the stores and the model in the background (after the MCP handshake)."""
        if self._tg is not None and not self._ready and not self._warming:
            self._warming = True
            self.embedder.start()
            self._tg.start_soon(self._warm_up)

    async def _warm_up(self) -> None:
        try:
            if await self._open_reads():
                # Milvus is needed by the first write only: let a first search run without it first.
                await anyio.sleep(MILVUS_OPEN_DELAY)
            await self.ready()
        except MemoryServiceError as e:
            logger.error("warm-up failed: %s", e)
        finally:
            self._warming = False

    @property
    def is_ready(self) -> bool:
        return self._ready

    async def ready(self, *, apply_pending: bool = True) -> None:
        """Open everything once; a failure is raised to the caller and retried on the next call.

        Changes recorded but not applied by an earlier run are re-applied first, unless
        `apply_pending` is false (`doctor` reports them instead).
        """
        if self._ready:
            return
        async with self._open_lock:
            if self._ready:
                return
            await self.history.open()
            await self.embedder.open()
            await self.vectors.open(self.embedder.model_id, self.embedder.dimensions)
            if self.vectors.stale_schema:
                await self._rebuild_collection()
            pending = await self.history.pending_ids()
            if pending and apply_pending:
                logger.warning("re-applying %d change(s) left unfinished by an earlier run", len(pending))
                await self._reconcile(pending)
                await self._flush_and_settle()
            self._ready = self._readable = True
            await anyio.to_thread.run_sync(release_free_memory)
            logger.info("memory store ready (%s)", self.settings.resolved_milvus_uri)

    async def _open_reads(self) -> bool:
        """Open what reads need: SQLite, the model and the search index (Milvus Lite with the index);
        False when reads need Milvus too (then `ready()` opens everything)."""
        if self._readable or self._indexed is None:
            return self._readable
        async with self._open_lock:
            if not self._readable:
                await self.history.open()
                await self.embedder.open()
                self._readable = await self._indexed.open_index(self.embedder.model_id, self.embedder.dimensions)
                await anyio.to_thread.run_sync(release_free_memory)  # the rows the index was built from
        return self._readable

    async def _ready_for_reads(self) -> None:
        """Open what reads need (with the search index: not Milvus, which opens in the background)."""
        if self._ready:
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

    async def _flusher(self) -> None:
        async for _ in self._flush_recv:
            await anyio.sleep(self.settings.flush_delay)
            # Shielded: a flush cut short at shutdown would leave the marks of what it made durable
            # (re-applied, needlessly, at the next start).
            with anyio.CancelScope(shield=True):
                try:
                    await self.flush()
                except BackendError as e:
                    logger.warning("flush failed: %s", e)

    async def flush(self) -> None:
        """Flush the vector store and clear the pending marks of the writes it made durable."""
        async with self._write_lock:
            await self._flush_and_settle()

    async def _flush_and_settle(self) -> None:
        # Milvus Lite drops rows not yet flushed when a flush fails (seen with a full disk), so on
        # Lite a pending mark stays until the flush that made its write durable succeeded.
        if not self.vectors.needs_flush:
            return
        flushed, self._unflushed = self._unflushed, set()
        try:
            await self.vectors.flush()
        except BackendError:
            self._unsettled.update(flushed)  # re-applied from SQLite by the next write or start
            raise
        if settled := flushed - self._unsettled:  # an unsettled id's mark covers a later, unapplied change
            await self._clear(sorted(settled))

    def _request_flush(self) -> None:
        if self.vectors.needs_flush:
            try:
                self._flush_send.send_nowait(None)
            except anyio.WouldBlock:
                pass  # a flush is already due

    # scope rules

    def _scope_for(self, explicit: Scope, caller: Caller, *, use_default: bool = True) -> Scope:
        explicit = check_scope(explicit.user_id, explicit.agent_id, explicit.run_id)
        bound = caller.bound
        if bound is not None:
            merged = {}
            for name, value in (
                ("user_id", explicit.user_id),
                ("agent_id", explicit.agent_id),
                ("run_id", explicit.run_id),
            ):
                fixed = getattr(bound, name)
                if fixed and value and value != fixed:
                    raise PermissionDenied(f"This credential is limited to {name}={fixed!r}; it cannot use {value!r}.")
                merged[name] = fixed or value
            scope = Scope(**merged)
            if not scope.is_empty():
                return scope
        if not explicit.is_empty():
            return explicit
        default_user = caller.default_user_id or self.settings.user_id
        if use_default and default_user:
            return Scope(user_id=default_user)
        raise InvalidInput(
            'Name at least one of user_id, agent_id or run_id (for example user_id="alice"), '
            "or start the server with MEMORY_USER_ID set."
        )

    @staticmethod
    def _check_writable(caller: Caller) -> None:
        if caller.read_only:
            raise PermissionDenied("This credential is read-only; it cannot change memories.")

    async def _owned(self, memory_id: str, caller: Caller, *, include_deleted: bool = False) -> MemoryRecord:
        memory_id = check_memory_id(memory_id)
        await self._ready_for_reads()
        record = await self.history.get(memory_id)
        if record is None or (record.deleted_at is not None and not include_deleted):
            raise not_found(memory_id)
        if caller.bound is not None and not caller.bound.contains(record):
            raise not_found(memory_id)
        return record

    # the write protocol

    async def _apply(self, changes: list[Change]) -> None:
        """Record `changes` in SQLite (one transaction), apply them to the vector store, clear the marks.

        On Milvus Lite with the search index the vector store updates the index and queues the
        Milvus calls for the next flush (stores/indexed.py), so a Milvus failure surfaces there.

        The caller holds `_write_lock`. Once SQLite has committed, the rest runs shielded from
        cancellation so that a cancelled call cannot leave the stores apart; a crash in between is
        repaired at the next start (the pending marks). All changes commit together, so a
        `delete_all` is all or nothing even when the vector store gets it in chunks.
        """
        if not changes:
            return
        await self.ready()
        await self._settle()
        try:
            await self.history.commit(changes, self.embedder.model_id)
        except BackendError as e:
            raise type(e)(f"{e} Nothing was changed.") from e
        ids = [c.new.id for c in changes]
        self._unsettled.update(ids)  # until the vector store holds the changes (or SQLite is reverted)
        with anyio.CancelScope(shield=True):
            try:
                for start in range(0, len(changes), APPLY_CHUNK):
                    chunk = changes[start : start + APPLY_CHUNK]
                    await self.vectors.upsert([(c.new, c.vector) for c in chunk if c.vector is not None])
                    await self.vectors.delete([c.new.id for c in chunk if c.new.deleted_at is not None])
            except BackendError as e:
                await self._undo(changes, e)
            self._unsettled.difference_update(ids)
            await self._applied(ids)

    async def _undo(self, changes: list[Change], cause: BackendError) -> None:
        """Put SQLite back as it was and make the vector store match it; always raises."""
        ids = [c.new.id for c in changes]
        try:
            await self.history.revert(changes)
        except BackendError:
            # SQLite keeps the new state and its marks, so the change is completed later (the next
            # write, `doctor --repair` or the next start): it is recorded but not confirmed.
            logger.exception("could not revert the history database after a vector store failure")
            raise BackendError(
                f"{cause} The change was recorded but not confirmed; it is completed once the vector store "
                "works again. Check with get_memory or list_memories before retrying."
            ) from cause
        try:
            await self._reconcile(ids)
            self._unsettled.difference_update(ids)
        except BackendError:
            logger.warning("vector store still failing; %d memory id(s) are re-checked later", len(ids))
        raise BackendError(f"{cause} Nothing was changed; try again.") from cause

    async def _applied(self, ids: list[str]) -> None:
        """The vector store holds these changes: clear their marks now, or after the next flush (Lite)."""
        if self.vectors.needs_flush:
            self._unflushed.update(ids)
            self._request_flush()
        else:
            await self._clear(ids)

    async def _clear(self, ids: list[str]) -> None:
        # Rows the vector store refused (logged there) keep their marks: retried at start, reported by doctor.
        ids = [i for i in ids if i not in self.vectors.refused]
        try:
            await self.history.clear_pending(ids)
        except BackendError:
            # Harmless: both stores hold the change; the marks are re-applied (idempotently) later.
            logger.warning("could not clear %d pending mark(s); they are re-checked later", len(ids))
            self._unsettled.update(ids)

    async def _settle(self) -> None:
        """Retry ids left unsettled by an earlier failure in this process (caller holds `_write_lock`)."""
        if not self._unsettled:
            return
        ids = sorted(self._unsettled)
        try:
            await self._reconcile(ids)
        except BackendError as e:
            logger.warning("%d memory id(s) still unsettled: %s", len(ids), e)
            return
        self._unsettled.difference_update(ids)

    async def _reconcile(self, ids: list[str]) -> None:
        """Make the vector store match SQLite's record for these ids, then clear their marks.

        Idempotent: a memory SQLite holds live is upserted (with its stored embedding, else re-embedded),
        any other id deleted.
        """
        for start in range(0, len(ids), APPLY_CHUNK):
            chunk = ids[start : start + APPLY_CHUNK]
            records = await self.history.get_many(chunk)
            live = [r for r in records.values() if r.deleted_at is None]
            dead = [i for i in chunk if i not in records or records[i].deleted_at is not None]
            if live:
                await self.vectors.upsert(list(zip(live, await self._vectors_for(live), strict=True)))
            await self.vectors.delete(dead)
            await self._applied(chunk)

    async def _vectors_for(self, records: list[MemoryRecord]) -> list[list[float]]:
        """The embeddings of these memories' texts: stored ones from SQLite, the rest computed."""
        model = self.embedder.model_id
        stored = await self.history.embeddings(model, [r.hash for r in records])
        if missing := [r for r in records if r.hash not in stored]:
            computed = list(zip(missing, await self.embedder.embed([r.memory for r in missing]), strict=True))
            stored.update((r.hash, v) for r, v in computed)
            try:
                await self.history.save_embeddings(model, [(r.hash, r.memory, v) for r, v in computed])
            except BackendError:
                logger.warning("could not store %d embedding(s); they are computed again when needed", len(computed))
        return [stored[r.hash] for r in records]

    async def resync(self, ids: list[str]) -> None:
        """Make the vector store match SQLite's record for `ids` (used by `doctor --repair`)."""
        await self.ready()
        async with self._write_lock:
            await self._reconcile(ids)
            self._unsettled.difference_update(ids)

    @staticmethod
    def _entry(
        event: Literal["ADD", "UPDATE", "DELETE", "NONE"],
        old: MemoryRecord | None,
        new: MemoryRecord,
        caller: Caller,
        *,
        role: str | None = None,
        reason: str | None = None,
        source_hash: str | None = None,
    ) -> HistoryEntry:
        return HistoryEntry(
            id=str(uuid.uuid4()),
            memory_id=new.id,
            old_memory=old.memory if old else None,
            new_memory=None if event == "DELETE" else new.memory,
            event=event,
            created_at=new.created_at,
            updated_at=now_us() if event == "NONE" else new.deleted_at or new.updated_at,
            user_id=new.user_id,
            agent_id=new.agent_id,
            run_id=new.run_id,
            actor=caller.actor,
            role=role,
            reason=reason,
            source_hash=source_hash,
        )

    # tools

    def _messages(self, messages: object) -> list[Message]:
        if isinstance(messages, str):
            return [Message(None, check_text(messages, self.settings.max_memory_bytes))]
        if not isinstance(messages, list) or not messages:
            raise InvalidInput("messages must be a string or a non-empty list of {role, content} objects.")
        if len(messages) > self.settings.max_messages:
            raise InvalidInput(f"messages holds {len(messages)} items; the limit is {self.settings.max_messages}.")
        out: list[Message] = []
        for i, m in enumerate(messages):
            role = getattr(m, "role", None) if not isinstance(m, dict) else m.get("role")
            content = getattr(m, "content", None) if not isinstance(m, dict) else m.get("content")
            if role not in ROLES:
                raise InvalidInput(f"messages[{i}].role must be one of {', '.join(ROLES)}.")
            out.append(
                Message(str(role), check_text(content, self.settings.max_memory_bytes, f"messages[{i}].content"))
            )
        return out

    async def add(
        self,
        messages: object,
        scope: Scope,
        metadata: object = None,
        infer: bool | None = None,
        caller: Caller = ANONYMOUS,
    ) -> AddResult:
        self._check_writable(caller)
        scope = self._scope_for(scope, caller)
        meta = check_metadata(metadata)
        parsed = [m for m in self._messages(messages) if m.role != "system"]
        if not parsed:
            raise InvalidInput("messages holds only system messages; there is nothing to remember.")
        if infer and self.llm is None:
            raise InvalidInput("infer=true needs an LLM, and none is configured (set MEMORY_LLM); omit infer.")
        await self.ready()
        if self.llm is not None and infer is not False:
            return await self._add_inferred(self.llm, parsed, scope, meta, caller)
        vectors = await self.embedder.embed([m.content for m in parsed])
        return await self._add_verbatim(parsed, vectors, scope, meta, caller, near_dup=infer is None)

    async def _add_verbatim(
        self,
        parsed: list[Message],
        vectors: list[list[float]],
        scope: Scope,
        meta: dict[str, Any],
        caller: Caller,
        *,
        near_dup: bool = False,
        note: str | None = None,
        reason: str | None = None,
        source_hash: str | None = None,
    ) -> AddResult:
        """Store each message as given; identical text in the scope (or, with `near_dup`, text whose
        closest memory scores above `dedup_threshold` and has the same numbers) returns that memory
        with event NONE."""
        threshold = self.settings.dedup_threshold
        check_near = near_dup and threshold < 1
        results: list[AddEvent] = []
        changes: list[Change] = []
        skipped = 0
        async with self._write_lock:
            seen: dict[str, MemoryRecord] = {}
            batch: list[tuple[MemoryRecord, list[float]]] = []
            for message, vector in zip(parsed, vectors, strict=True):
                digest = text_hash(message.content)
                existing = seen.get(digest) or await self.history.find_live_by_hash(digest, scope.key)
                if existing is not None:
                    results.append(
                        AddEvent(
                            id=existing.id, memory=existing.memory, event="NONE", reason="Already stored in this scope."
                        )
                    )
                    continue
                if check_near:
                    close = await self._closest(vector, scope, batch)
                    if (
                        close is not None
                        and close[1] > threshold
                        and _numbers(close[0].memory) == _numbers(message.content)
                    ):
                        skipped += 1
                        results.append(
                            AddEvent(
                                id=close[0].id,
                                memory=close[0].memory,
                                event="NONE",
                                reason=f"Near-duplicate of this memory (similarity {close[1]:.3f} > {threshold}).",
                            )
                        )
                        continue
                record = MemoryRecord.new(message.content, meta, scope)
                seen[digest] = record
                batch.append((record, vector))
                entry = self._entry(
                    "ADD", None, record, caller, role=message.role, reason=reason, source_hash=source_hash
                )
                changes.append(Change(None, record, entry, vector))
                results.append(AddEvent(id=record.id, memory=record.memory, event="ADD"))
            await self._apply(changes)
        if skipped:
            dup_note = (
                f"{skipped} message(s) not stored: too similar to a stored memory (returned with event NONE); "
                "pass infer=false to store them anyway."
            )
            note = f"{note} {dup_note}" if note else dup_note
        return AddResult(results=results, note=note)

    async def _closest(
        self, vector: list[float], scope: Scope, batch: list[tuple[MemoryRecord, list[float]]]
    ) -> tuple[MemoryRecord, float] | None:
        """The most similar live memory in scope, including those added earlier in this call."""
        hits = await self.vectors.search(vector, filters.scope_conditions(scope), 1)
        best = hits[0] if hits else None
        for record, other in batch:
            score = sum(a * b for a, b in zip(vector, other, strict=True))
            if best is None or score > best[1]:
                best = (record, score)
        return best

    # inference

    async def _add_inferred(
        self, llm: ChatModel, parsed: list[Message], scope: Scope, meta: dict[str, Any], caller: Caller
    ) -> AddResult:
        """Extract facts, reconcile them with similar memories, apply the decisions.

        The LLM is called outside the write lock; the targets of its decisions are re-read under
        the lock and must still be live and in scope. On an LLM failure the input is stored verbatim.
        """
        from .inference.reconcile import Decision, decide, extract, plan  # only with an LLM

        pairs = [(m.role or "user", m.content) for m in parsed]
        source_hash = text_hash("\n".join(f"{r}: {c}" for r, c in pairs))
        max_bytes = self.settings.max_memory_bytes
        try:
            facts = await extract(llm, pairs, datetime.now(timezone.utc).date().isoformat(), max_bytes)
            if not facts:
                return AddResult(
                    results=[],
                    note="The LLM found no fact worth remembering; nothing was stored. "
                    "Pass infer=false to store the messages verbatim.",
                )
            fact_vectors = await self.embedder.embed(facts)
            candidates = await self._candidates(fact_vectors, scope)
            if candidates:
                decisions = await decide(llm, facts, [c.memory for c in candidates])
            else:
                decisions = [
                    Decision(fact=i, event="ADD", reason="Nothing similar is stored.") for i in range(len(facts))
                ]
        except InferenceError as e:
            logger.warning("inference failed; storing the input verbatim: %s", e)
            vectors = await self.embedder.embed([m.content for m in parsed])
            return await self._add_verbatim(
                parsed,
                vectors,
                scope,
                meta,
                caller,
                note=f"Inference failed, so the input was stored verbatim: {e}",
                reason=f"Stored verbatim: inference failed ({e})",
                source_hash=source_hash,
            )
        actions, problems = plan(facts, decisions, [c.id for c in candidates], max_bytes)
        vector_of = dict(zip(facts, fact_vectors, strict=True))
        missing = sorted({a.text for a in actions if a.text is not None and a.text not in vector_of})
        if missing:
            vector_of.update(zip(missing, await self.embedder.embed(missing), strict=True))
        async with self._write_lock:
            results, changes, known = await self._resolve(
                actions, vector_of, scope, meta, caller, source_hash, problems
            )
            await self._apply(changes)
            # NONE decisions change nothing but are history too: "told again, already known, because..."
            await self.history.note(
                [self._entry("NONE", r, r, caller, reason=why, source_hash=source_hash) for r, why in known]
            )
        note = ("Some decisions of the LLM were not applied: " + "; ".join(problems) + ".") if problems else None
        return AddResult(results=results, note=note)

    async def _candidates(self, vectors: list[list[float]], scope: Scope) -> list[MemoryRecord]:
        """Stored memories similar to any of the facts, in scope, each once."""
        where = filters.scope_conditions(scope)
        found: dict[str, MemoryRecord] = {}
        for vector in vectors:
            for record, _ in await self.vectors.search(vector, where, CANDIDATES_PER_FACT):
                found.setdefault(record.id, record)
        return list(found.values())

    async def _resolve(
        self,
        actions: list[Action],
        vector_of: dict[str, list[float]],
        scope: Scope,
        meta: dict[str, Any],
        caller: Caller,
        source_hash: str,
        problems: list[str],
    ) -> tuple[list[AddEvent], list[Change], list[tuple[MemoryRecord, str | None]]]:
        """Turn actions into changes against the current state (call with the write lock held), and
        list the memories the model found already known (NONE) with its reasons."""
        from .inference.reconcile import Action

        current = await self.history.get_many(sorted({a.target for a in actions if a.target}))
        touched: set[str] = set()
        added: dict[str, MemoryRecord] = {}
        results: list[AddEvent] = []
        changes: list[Change] = []
        known: list[tuple[MemoryRecord, str | None]] = []
        for action in actions:
            old = current.get(action.target) if action.target else None
            if action.target is not None:
                if old is None or old.deleted_at is not None or not scope.contains(old) or old.id in touched:
                    # gone since the LLM saw it, or already changed by an earlier decision of this add
                    logger.warning("%s of memory %s skipped: no longer applicable", action.event, action.target)
                    if action.event != "UPDATE" or action.text is None:
                        continue
                    problems.append(f"an UPDATE of memory {action.target} was stored as a new memory")
                    action, old = Action("ADD", action.text, None, action.reason), None
            ts = now_us()
            if action.event == "ADD" and action.text is not None:
                digest = text_hash(action.text)
                existing = added.get(digest) or await self.history.find_live_by_hash(digest, scope.key)
                if existing is not None:
                    results.append(AddEvent(id=existing.id, memory=existing.memory, event="NONE", reason=action.reason))
                    known.append((existing, action.reason))
                    continue
                new = MemoryRecord.new(action.text, meta, scope)
                added[digest] = new
                entry = self._entry("ADD", None, new, caller, reason=action.reason, source_hash=source_hash)
                changes.append(Change(None, new, entry, vector_of[action.text]))
                results.append(AddEvent(id=new.id, memory=new.memory, event="ADD", reason=action.reason))
                continue
            if old is None:
                continue
            if action.event == "NONE" or (action.event == "UPDATE" and action.text == old.memory):
                results.append(AddEvent(id=old.id, memory=old.memory, event="NONE", reason=action.reason))
                known.append((old, action.reason))
                continue
            touched.add(old.id)
            if action.event == "UPDATE" and action.text is not None:
                text = action.text
                new = old.updated(memory=text, hash=text_hash(text), metadata={**old.metadata, **meta}, updated_at=ts)
                entry = self._entry("UPDATE", old, new, caller, reason=action.reason, source_hash=source_hash)
                changes.append(Change(old, new, entry, vector_of[text]))
                results.append(
                    AddEvent(id=old.id, memory=text, event="UPDATE", previous_memory=old.memory, reason=action.reason)
                )
            elif action.event == "DELETE":
                new = old.updated(deleted_at=ts)
                entry = self._entry("DELETE", old, new, caller, reason=action.reason, source_hash=source_hash)
                changes.append(Change(old, new, entry))
                results.append(AddEvent(id=old.id, memory=old.memory, event="DELETE", reason=action.reason))
        return results, changes, known

    async def search(
        self,
        query: object,
        scope: Scope,
        limit: object = 10,
        threshold: float | None = None,
        filters_: object = None,
        caller: Caller = ANONYMOUS,
    ) -> SearchResult:
        text = check_text(query, self.settings.max_memory_bytes, "query")
        scope = self._scope_for(scope, caller)
        limit = check_limit(limit, 1, MAX_SEARCH_LIMIT)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InvalidInput(f"threshold must be from -1 to 1 (scores are -1..1, higher is better), got {threshold}.")
        where = filters.within(scope, filters_)
        await self._ready_for_reads()
        hits = await self._ranked(text, where, limit)
        s = self.settings
        hits = ranking.with_recency(hits, s.recency_weight, s.recency_half_life_days, now_us())[:limit]
        return SearchResult(results=[SearchHit.scored(r, x) for r, x in hits if threshold is None or x >= threshold])

    async def _ranked(self, text: str, where: filters.And, limit: int) -> list[tuple[MemoryRecord, float]]:
        """Candidates best first, scored as `server.ranking` documents for the configured mode."""
        mode = self.settings.search_mode if self.vectors.keyword_search else "dense"
        # Recency may reorder, so it needs more candidates than the page.
        wanted = max(limit, FUSION_CANDIDATES) if mode == "hybrid" or self.settings.recency_weight > 0 else limit
        if mode == "keyword":
            return ranking.keyword_scores(await self.vectors.search_keywords(text, where, wanted))

        async def dense() -> list[tuple[MemoryRecord, float]]:
            [vector] = await self.embedder.embed([text], kind="query")
            return await self.vectors.search(vector, where, wanted)

        if mode == "dense":
            return await dense()
        # The keyword search runs while the query is embedded and searched; errors are caught here
        # so that no ExceptionGroup reaches the caller.
        found: dict[str, list[tuple[MemoryRecord, float]]] = {}
        failed: list[MemoryServiceError] = []

        async def run(name: str, search: Callable[[], Awaitable[list[tuple[MemoryRecord, float]]]]) -> None:
            try:
                found[name] = await search()
            except MemoryServiceError as e:
                failed.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "dense", dense)
            tg.start_soon(run, "keyword", lambda: self.vectors.search_keywords(text, where, wanted))
        if failed:
            raise failed[0]
        return ranking.fuse(found["dense"], found["keyword"], self.settings.keyword_weight)

    async def get(self, memory_id: str, caller: Caller = ANONYMOUS) -> MemoryItem:
        return MemoryItem.of(await self._owned(memory_id, caller))

    async def list(
        self,
        scope: Scope,
        filters_: object = None,
        limit: object = 100,
        cursor: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> ListResult:
        scope = self._scope_for(scope, caller)
        limit = check_limit(limit, 1, MAX_LIST_LIMIT)
        where, params = filters.to_sql(filters.within(scope, filters_))
        after = _decode_cursor(cursor) if cursor else None
        await self._ready_for_reads()
        rows = await self.history.list_live(where, params, limit + 1, after)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = _encode_cursor(page[-1]) if more else None
        return ListResult(results=[MemoryItem.of(r) for r in page], next_cursor=next_cursor)

    async def update(
        self, memory_id: str, data: object, metadata: object = None, caller: Caller = ANONYMOUS
    ) -> MemoryItem:
        self._check_writable(caller)
        memory_id = check_memory_id(memory_id)
        text = check_text(data, self.settings.max_memory_bytes)
        meta = None if metadata is None else check_metadata(metadata)
        await self._owned(memory_id, caller)  # fail fast before embedding
        [vector] = await self.embedder.embed([text])
        async with self._write_lock:
            old = await self._owned(memory_id, caller)
            new_meta = old.metadata if meta is None else meta
            if old.memory == text and old.metadata == new_meta:
                return MemoryItem.of(old)
            new = old.updated(memory=text, hash=text_hash(text), metadata=new_meta, updated_at=now_us())
            await self._apply([Change(old, new, self._entry("UPDATE", old, new, caller), vector)])
        return MemoryItem.of(new)

    async def delete(self, memory_id: str, caller: Caller = ANONYMOUS) -> DeleteResult:
        self._check_writable(caller)
        memory_id = check_memory_id(memory_id)
        async with self._write_lock:
            old = await self._owned(memory_id, caller)
            new = old.updated(deleted_at=now_us())
            await self._apply([Change(old, new, self._entry("DELETE", old, new, caller))])
        return DeleteResult(id=memory_id, deleted=True, message=f"Memory {memory_id} deleted.")

    async def delete_all(
        self, scope: Scope, confirm: bool, filters_: object = None, caller: Caller = ANONYMOUS
    ) -> DeleteAllResult:
        self._check_writable(caller)
        scope = check_scope(scope.user_id, scope.agent_id, scope.run_id)
        if scope.is_empty() and caller.bound is None:
            raise InvalidInput("delete_all_memories needs a scope: name user_id, agent_id or run_id.")
        scope = self._scope_for(scope, caller, use_default=False)
        if confirm is not True:
            raise InvalidInput(f"This would delete every memory of {scope.describe()}; call again with confirm=true.")
        where, params = filters.to_sql(filters.within(scope, filters_))
        await self.ready()
        async with self._write_lock:
            records = await self.history.list_live(where, params, None)
            ts = now_us()
            changes = []
            for old in records:
                new = old.updated(deleted_at=ts)
                changes.append(Change(old, new, self._entry("DELETE", old, new, caller)))
            await self._apply(changes)
        return DeleteAllResult(
            deleted_count=len(records),
            scope={k: v for k, v in scope.items()},
            message=f"Deleted {len(records)} memories of {scope.describe()}.",
        )

    async def memory_history(self, memory_id: str, caller: Caller = ANONYMOUS) -> HistoryResult:
        record = await self._owned(memory_id, caller, include_deleted=True)
        events = await self.history.history(record.id)
        return HistoryResult(memory_id=record.id, events=[HistoryEvent.of(h) for h in events])


def _numbers(text: str) -> list[str]:
    # Embeddings barely tell "Exam on 2025-11-20" from "... 11-21" (cosine 0.99 with MiniLM), so
    # texts whose numbers differ are never near-duplicates. Order counts too: "room 12, floor 3" is
    # not "room 3, floor 12".
    return re.findall(r"\d+", text)


def _encode_cursor(last: MemoryRecord) -> str:
    raw = json.dumps([last.created_at, last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created_at, int) or not isinstance(memory_id, str):
            raise ValueError
        return created_at, memory_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid: pass the next_cursor value from the previous page.") from None
