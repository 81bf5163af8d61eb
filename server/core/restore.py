"""`restore_memory`: undo, by bringing a memory back to its state after one of its history events.

The state after an event is its text (`new_memory`) and the metadata it left (recorded since
migration 0004; an older event's metadata is unknown, so the current one is kept). With no event
named, the state before the last change is restored: the last edit undone, a deletion reverted.
The restore is itself an event (RESTORE, with the actor and the event it went back to), written
through the write protocol like any other change, so it can be undone in turn.
"""

from __future__ import annotations

from milvus_memory_mcp.core import scopes
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Embedder, Signed, embed_signed, signature
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import STATE_EVENTS, Caller, Change, HistoryEntry, MemoryRecord, now_us, text_hash


def target_event(memory_id: str, events: list[HistoryEntry], event_id: object) -> HistoryEntry:
    """The event whose resulting state a restore brings back (InvalidInput when there is none)."""
    changes = [e for e in events if e.event in STATE_EVENTS]
    if event_id is None:
        if len(changes) < 2:
            raise InvalidInput(f"Memory {memory_id} has no earlier state to restore: it was never changed.")
        target = changes[-2]
        if target.event == "DELETE":
            raise InvalidInput(
                f"Before its last change memory {memory_id} was deleted; delete_memory deletes it again."
            )
        return target
    if not isinstance(event_id, str) or not event_id or len(event_id) > 100:
        raise InvalidInput("event_id must be the id of one of the memory's history events (see memory_history).")
    named = next((i for i, e in enumerate(events) if e.id == event_id), None)
    if named is None:
        raise InvalidInput(
            f"Memory {memory_id} has no history event {event_id!r}; memory_history lists its events and their ids."
        )
    # A NONE event changed nothing: its state is that of the last change before it.
    target = next((e for e in reversed(events[: named + 1]) if e.event in STATE_EVENTS), None)
    if target is None:
        raise InvalidInput(f"Event {event_id!r} left no state of memory {memory_id} to restore.")
    if target.event == "DELETE":
        raise InvalidInput(
            f"Event {event_id!r} deleted memory {memory_id}; name an earlier event, or use delete_memory."
        )
    return target


class Restorer:
    def __init__(self, history: HistoryStore, writes: WriteProtocol, embedder: Embedder) -> None:
        self._history = history
        self._writes = writes
        self._embedder = embedder

    async def restore(self, memory_id: str, event_id: object, caller: Caller) -> MemoryRecord:
        """Restore `memory_id` to its state after `event_id` (default: before its last change)."""
        # Resolve and embed outside the lock (an embedding may take a while), then check under the
        # lock that no change came in between.
        old, target = await self._target(memory_id, event_id, caller)
        text = target.new_memory or ""
        signed = await self._vector(text)
        async with self._writes.lock:
            current, again = await self._target(memory_id, event_id, caller)
            if again.id != target.id or current.updated_at != old.updated_at or current.deleted_at != old.deleted_at:
                raise InvalidInput(f"Memory {memory_id} changed while it was being restored; try again.")
            metadata = old.metadata if target.metadata is None else target.metadata
            if old.deleted_at is None and old.memory == text and old.metadata == metadata:
                return old  # already in that state: nothing to record
            new = old.updated(
                memory=text, hash=text_hash(text), metadata=metadata, updated_at=now_us(), deleted_at=None
            )
            reason = f"Restored the state after event {target.id} ({target.event})."
            [vector] = await self._writes.current([text], signed)
            await self._writes.apply([Change.of("RESTORE", old, new, caller.actor, vector, reason=reason)])
        return new

    async def _target(self, memory_id: str, event_id: object, caller: Caller) -> tuple[MemoryRecord, HistoryEntry]:
        record = await scopes.owned(self._history, memory_id, caller, include_deleted=True)
        return record, target_event(record.id, await self._history.history(record.id), event_id)

    async def _vector(self, text: str) -> Signed:
        """The text's embedding: stored in the history database when it was, else computed."""
        made_by = signature(self._embedder)
        stored = await self._history.embeddings(*made_by, [text_hash(text)])
        if stored:
            return Signed(made_by, list(stored.values()))
        return await embed_signed(self._embedder, [text])
