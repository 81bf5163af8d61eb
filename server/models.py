"""Pydantic results returned by the tools (MCP structured output).

Every field a compact result may leave out has a default, so the published output schemas never
require it (tools/render.py decides what a compact result keeps; `verbose=true` keeps it all).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from milvus_memory_mcp.core.cursors import encode_cursor
from milvus_memory_mcp.records import HistoryEntry, MemoryRecord, iso, public_metadata

Event = Literal["ADD", "UPDATE", "DELETE", "NONE", "RESTORE"]


class MemoryItem(BaseModel):
    id: str
    memory: str
    hash: str | None = Field(default=None, description="md5 of the text (verbose).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, r: MemoryRecord) -> MemoryItem:
        return cls(
            id=r.id,
            memory=r.memory,
            hash=r.hash,
            metadata=public_metadata(r.metadata),
            created_at=iso(r.created_at),
            updated_at=iso(r.updated_at),
            user_id=r.user_id,
            agent_id=r.agent_id,
            run_id=r.run_id,
        )


class SearchHit(MemoryItem):
    score: float = Field(description="Relevance 0-1, higher is better.")

    @classmethod
    def scored(cls, r: MemoryRecord, score: float) -> SearchHit:
        return cls(**MemoryItem.of(r).model_dump(), score=score)


class AddEvent(BaseModel):
    id: str
    memory: str
    event: Event
    previous_memory: str | None = None
    reason: str | None = None


class AddResult(BaseModel):
    results: list[AddEvent]
    note: str | None = None


class Truncation(BaseModel):
    """Fields a result cut to `max_tokens` adds."""

    truncated: bool = False
    note: str | None = None


class SearchResult(Truncation):
    results: list[SearchHit]


class ListResult(Truncation):
    results: list[MemoryItem]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")
    _cursors: list[str] = PrivateAttr(default_factory=list)  # after each item: a page cut to a budget

    @classmethod
    def page(cls, records: list[MemoryRecord], more: bool) -> ListResult:
        result = cls(results=[MemoryItem.of(r) for r in records])
        result._cursors = [encode_cursor(r) for r in records]
        result.next_cursor = result._cursors[-1] if more else None
        return result

    def cursor_after(self, index: int) -> str:
        return self._cursors[index]


class DeleteResult(BaseModel):
    id: str
    deleted: bool
    message: str


class DeleteAllResult(BaseModel):
    deleted_count: int
    scope: dict[str, str]
    message: str


class HistoryEvent(BaseModel):
    id: str | None = None
    memory_id: str | None = None
    old_memory: str | None = None
    new_memory: str | None = None
    event: Event = Field(description="NONE: an inferred add found it already known. RESTORE: restore_memory.")
    created_at: str | None = None
    updated_at: str | None = Field(default=None, description="When this event happened.")
    is_deleted: bool = False
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor: str | None = None
    role: str | None = None
    reason: str | None = None
    source_hash: str | None = None

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryEvent:
        return cls(
            id=h.id,
            memory_id=h.memory_id,
            old_memory=h.old_memory,
            new_memory=h.new_memory,
            event=h.event,
            created_at=iso(h.created_at),
            updated_at=iso(h.updated_at),
            is_deleted=h.event == "DELETE",
            user_id=h.user_id,
            agent_id=h.agent_id,
            run_id=h.run_id,
            actor=h.actor,
            role=h.role,
            reason=h.reason,
            source_hash=h.source_hash,
        )


class HistoryResult(BaseModel):
    memory_id: str
    events: list[HistoryEvent]
