"""update_memory, delete_memory and delete_all_memories: the changes to stored memories, each
under the write lock, re-reading the memory there so that no change is lost to a race."""

from __future__ import annotations

from typing import Any

from milvus_memory_mcp.core import scopes
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Signed
from milvus_memory_mcp.filters import And
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import Caller, Change, MemoryRecord, context_of, now_us, text_hash, with_context


class Edits:
    def __init__(self, history: HistoryStore, writes: WriteProtocol) -> None:
        self._history = history
        self._writes = writes

    async def update(
        self, memory_id: str, text: str, metadata: dict[str, Any] | None, signed: Signed, caller: Caller
    ) -> MemoryRecord:
        """The memory with its new text (and metadata, when given; its context stays); unchanged when
        nothing differs."""
        async with self._writes.lock:
            old = await scopes.owned(self._history, memory_id, caller)
            new_meta = old.metadata if metadata is None else with_context(metadata, context_of(old.metadata))
            if old.memory == text and old.metadata == new_meta:
                return old
            new = old.updated(memory=text, hash=text_hash(text), metadata=new_meta, updated_at=now_us())
            [vector] = await self._writes.current([text], signed)
            await self._writes.apply([Change.of("UPDATE", old, new, caller.actor, vector)])
        return new

    async def delete(self, memory_id: str, caller: Caller) -> bool:
        """Delete the memory; False when it was deleted already (an id once live in the caller's
        scope: deleting is idempotent), NotFound when the caller never could see it."""
        async with self._writes.lock:
            old = await scopes.owned(self._history, memory_id, caller, include_deleted=True)
            if old.deleted_at is not None:
                return False
            await self._writes.apply([Change.of("DELETE", old, old.updated(deleted_at=now_us()), caller.actor)])
        return True

    async def delete_all(self, where: And, caller: Caller) -> int:
        """Delete every live memory matching `where`, all or nothing; how many."""
        async with self._writes.lock:
            records = await self._history.list_live(where, None)
            ts = now_us()
            await self._writes.apply([Change.of("DELETE", r, r.updated(deleted_at=ts), caller.actor) for r in records])
        return len(records)
