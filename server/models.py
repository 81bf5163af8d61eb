"""Pydantic results returned by the tools (MCP structured output)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from milvus_memory_mcp.records import HistoryEntry, MemoryRecord, iso


class MemoryItem(BaseModel):
    id: str = Field(description="The memory's id (a UUID).")
    memory: str = Field(description="The remembered text.")
    hash: str = Field(description="md5 of the memory text.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = Field(description="ISO-8601 time the memory was created.")
    updated_at: str | None = Field(description="ISO-8601 time of the last change.")
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, r: MemoryRecord) -> MemoryItem:
        return cls(
            id=r.id,
            memory=r.memory,
            hash=r.hash,
            metadata=r.metadata,
            created_at=iso(r.created_at),
            updated_at=iso(r.updated_at),
            user_id=r.user_id,
            agent_id=r.agent_id,
            run_id=r.run_id,
        )


class SearchHit(MemoryItem):
    score: float = Field(description="Relevance, higher is better (cosine similarity for dense search).")

    @classmethod
    def scored(cls, r: MemoryRecord, score: float) -> SearchHit:
        return cls(**MemoryItem.of(r).model_dump(), score=score)


class AddEvent(BaseModel):
    id: str
    memory: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    previous_memory: str | None = None
    reason: str | None = None


class AddResult(BaseModel):
    results: list[AddEvent]
    note: str | None = Field(default=None, description="Anything the agent should know about how the add went.")


class SearchResult(BaseModel):
    results: list[SearchHit]


class ListResult(BaseModel):
    results: list[MemoryItem]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last."
    )


class DeleteResult(BaseModel):
    id: str
    deleted: bool
    message: str


class DeleteAllResult(BaseModel):
    deleted_count: int
    scope: dict[str, str]
    message: str


class HistoryEvent(BaseModel):
    id: str
    memory_id: str
    old_memory: str | None
    new_memory: str | None
    event: Literal["ADD", "UPDATE", "DELETE", "NONE", "RESTORE"] = Field(
        description="NONE: an inferred add found this memory already known and changed nothing (see reason). "
        "RESTORE: restore_memory went back to an earlier state."
    )
    created_at: str | None = Field(description="When the memory was created.")
    updated_at: str | None = Field(description="When this event happened.")
    is_deleted: bool
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor: str | None = None
    role: str | None = None
    reason: str | None = Field(default=None, description="Why an inferred change was made (the LLM's one line).")
    source_hash: str | None = Field(default=None, description="md5 of the messages an inferred change came from.")

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
