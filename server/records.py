"""Plain internal records shared by the core and its adapters (no I/O here)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from typing_extensions import TypedDict, Unpack

Event = Literal["ADD", "UPDATE", "DELETE", "NONE", "RESTORE"]
STATE_EVENTS = ("ADD", "UPDATE", "DELETE", "RESTORE")  # the events that change a memory (NONE does not)
SCOPE_FIELDS = ("user_id", "agent_id", "run_id")


# A stored message's context: the messages around it in the conversation it was added with (a
# list of messages stored verbatim), kept in its metadata under a key no caller can write or filter
# on (`validation.METADATA_KEY_RE` refuses "@"). Keyword search matches a memory by its own words
# and its context's ("Three times a week" answers "How often does he work out?" asked just before;
# "Biscuit turned three!" is named by the reply "Happy birthday to your golden retriever!");
# results and history show metadata without it (`public_metadata`). Chosen on the tune half
# (README, "Conversation context"): the end of the two messages before, the start of the two after.
CONTEXT_KEY = "@context"
CONTEXT_BEFORE = 2  # how many messages before a stored message are in its context
CONTEXT_BEFORE_CHARS = 300  # their end (where the question it answers usually is)
CONTEXT_AFTER = 2  # how many messages after it (the replies, which often name what it is about)
CONTEXT_AFTER_CHARS = 150  # their start
CONTEXT_LIMIT = CONTEXT_BEFORE_CHARS + 1 + CONTEXT_AFTER_CHARS  # the longest context kept (an import's too)


def conversation_context(messages: list[str], i: int) -> str | None:
    """The context of the `i`th of messages added together: the end of the CONTEXT_BEFORE before
    it and the start of the CONTEXT_AFTER after it (None when it is alone)."""
    before = " ".join(messages[max(0, i - CONTEXT_BEFORE) : i])[-CONTEXT_BEFORE_CHARS:]
    after = " ".join(messages[i + 1 : i + 1 + CONTEXT_AFTER])[:CONTEXT_AFTER_CHARS]
    return " ".join(part for part in (before, after) if part) or None


def context_of(metadata: dict[str, Any] | None) -> str | None:
    value = (metadata or {}).get(CONTEXT_KEY)
    return value if isinstance(value, str) and value else None


def context_in(metadata_json: str | None) -> str | None:
    """`context_of` for metadata still in its stored JSON text (parsed only when it has a context)."""
    if not metadata_json or CONTEXT_KEY not in metadata_json:
        return None
    return context_of(json.loads(metadata_json))


def with_context(metadata: dict[str, Any], context: str | None) -> dict[str, Any]:
    """`metadata` with `context` (at most its last CONTEXT_LIMIT characters) as the memory's context."""
    return {**metadata, CONTEXT_KEY: context[-CONTEXT_LIMIT:]} if context else metadata


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as callers see and set it: without the keys the product keeps for itself."""
    return {k: v for k, v in metadata.items() if k != CONTEXT_KEY} if CONTEXT_KEY in metadata else metadata


def now_us() -> int:
    """Wall-clock time in microseconds since the epoch (the stores' time unit)."""
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).isoformat()


def text_hash(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Scope:
    """Who a memory belongs to. `None` means "not part of the scope"; stores keep it as ""."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    def is_empty(self) -> bool:
        return not (self.user_id or self.agent_id or self.run_id)

    def items(self) -> list[tuple[str, str]]:
        """The fields that are set, as (name, value) pairs."""
        return [(k, v) for k, v in zip(SCOPE_FIELDS, (self.user_id, self.agent_id, self.run_id), strict=True) if v]

    def contains(self, record: MemoryRecord) -> bool:
        """True when every field set here matches the record's (a bound scope's by-id check)."""
        return all(getattr(record, k) == v for k, v in self.items())

    @property
    def key(self) -> tuple[str, str, str]:
        """The exact scope as the stores keep it ("" for a field that is not set)."""
        return (self.user_id or "", self.agent_id or "", self.run_id or "")

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.items()) or "no scope"


def scope_terms(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """ "field=value" for each scope (field, value) pair: what read-your-writes timestamps are noted
    and read under, per scope (stores/milvus_client.py `WriteClock`)."""
    return [f"{field}={value}" for field, value in pairs]


@dataclass(frozen=True)
class MemoryRecord:
    """The current state of one memory, as both stores keep it (the vector lives in Milvus only)."""

    id: str
    memory: str
    hash: str
    metadata: dict[str, Any]
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    created_at: int
    updated_at: int
    deleted_at: int | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.user_id, self.agent_id, self.run_id)

    @classmethod
    def new(cls, text: str, metadata: dict[str, Any], scope: Scope, at: int | None = None) -> MemoryRecord:
        """A memory about to be added: a fresh uuid4 id, created and updated `at` (microseconds since
        the epoch: when it was said, for a conversation stored later), by default now."""
        ts = now_us() if at is None else at
        return cls(
            id=str(uuid.uuid4()),
            memory=text,
            hash=text_hash(text),
            metadata=metadata,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            created_at=ts,
            updated_at=ts,
        )

    def updated(self, **changes: Any) -> MemoryRecord:
        return replace(self, **changes)


class Why(TypedDict, total=False):
    """Why a history event happened: the message's role, the LLM's reason, the source messages' md5."""

    role: str | None
    reason: str | None
    source_hash: str | None


@dataclass(frozen=True)
class HistoryEntry:
    """One ADD / UPDATE / DELETE / RESTORE event of a memory (or a NONE: told again, changed nothing)."""

    id: str
    memory_id: str
    old_memory: str | None
    new_memory: str | None
    event: Event
    created_at: int
    updated_at: int
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    actor: str | None = None
    role: str | None = None
    reason: str | None = None
    source_hash: str | None = None
    metadata: dict[str, Any] | None = None  # the memory's metadata after the event (None: not recorded)


@dataclass
class Change:
    """One memory's transition, applied to both stores by the write protocol.

    `old` is None for an ADD; `new.deleted_at` is set for a DELETE. `vector` is the embedding of
    `new.memory` when the text is live (None for a delete).
    """

    old: MemoryRecord | None
    new: MemoryRecord
    history: HistoryEntry
    vector: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        event: Event,
        old: MemoryRecord | None,
        new: MemoryRecord,
        actor: str | None,
        vector: list[float] | None = None,
        **why: Unpack[Why],
    ) -> Change:
        """The change that takes a memory from `old` (None: it is new) to `new`, by `actor`, with its
        history event (a NONE event changes nothing: `old` is `new`, and only the event is recorded)."""
        entry = HistoryEntry(
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
            actor=actor,
            metadata=new.metadata,
            **why,
        )
        return cls(old, new, entry, vector)


@dataclass(frozen=True)
class Caller:
    """Who is calling: a scope bound by a credential (None: unrestricted), the actor name for
    history, whether writes are allowed, and the user_id for calls that name no scope (the
    calling process's MEMORY_USER_ID; it travels with calls forwarded to another process).
    The tool adapter builds it per call."""

    bound: Scope | None = None
    actor: str | None = None
    read_only: bool = False
    default_user_id: str | None = None


ANONYMOUS = Caller()
