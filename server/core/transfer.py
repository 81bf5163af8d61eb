"""Export and import: the JSON Lines format, the export stream and the importer.

Format (version 1): a header line `{"format": "milvus-memory-mcp", "version": 1, "embedder": ...,
"dimensions": ..., "counts": {"memories": n, "events": m}, ...}`, then one memory a line: its id,
text, metadata, scope, times (ISO-8601, to the microsecond), `deleted_at` (null when live), every
history event, `context` when it has one (the messages around it: `records.CONTEXT_KEY`; also per
event), and `vector` only when exported `--with-vectors`.

An import keeps ids, times and history. Vectors in the file are used when they were made by the
current embedder (same id and length, finite numbers); otherwise the texts are embedded again (or
taken from the embeddings cache). A memory whose id is present is skipped (the default: a second
import changes nothing) or replaced whole. Writes go through the write protocol, a batch at a time.
A line is held to what the tools accept (the text's size and visible content, a scope, metadata,
no NUL or lone surrogate in any text), and one whose history event ids belong to another memory is
refused (importing it would move that memory's events): such lines are reported by id, the rest of
the batch is imported. A memory's history must end in its state (deleted by a DELETE, live with
its text): `as_of`, `memory_history` and undo read it. A line without one (written by hand or by
another tool) gets the events that say what the line does: an ADD at its `created_at`, and a
DELETE at its `deleted_at` when it is deleted (ids derived from the memory's, so that importing
the line again gives the same events).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TextIO

from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Embedder, signature
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.filters import Node, parse_time
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import (
    STATE_EVENTS,
    HistoryEntry,
    MemoryRecord,
    context_of,
    public_metadata,
    text_hash,
    with_context,
)
from milvus_memory_mcp.validation import (
    check_memory_id,
    check_metadata,
    check_plain_string,
    check_scope,
    check_text,
    has_surrogates,
)

FORMAT = "milvus-memory-mcp"
VERSION = 1
PAGE = 500  # memories read a query
EVENTS = ("ADD", "UPDATE", "DELETE", "NONE", "RESTORE")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
OnConflict = Literal["skip", "replace"]
Item = tuple[MemoryRecord, list[HistoryEntry], list[float] | None]
MAX_EVENT_ID_BYTES = 128


def iso_us(us: int | None) -> str | None:
    """Microseconds as ISO-8601, exactly (no float on the way)."""
    return None if us is None else (EPOCH + timedelta(microseconds=us)).isoformat()


def _time(obj: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    try:
        return parse_time(key, value)
    except InvalidInput:
        raise InvalidInput(f"{key} must be an ISO-8601 time, got {str(value)[:40]!r}") from None


def _text(obj: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise InvalidInput(f"{key} must be a non-empty string")
    if "\x00" in value or has_surrogates(value):
        raise InvalidInput(f"{key} contains a NUL character or a lone UTF-16 surrogate")
    return value


def _metadata_out(metadata: dict[str, Any]) -> dict[str, Any]:
    """The line's `metadata` (as callers see it) and `context` (when there is one)."""
    context = context_of(metadata)
    return {"metadata": public_metadata(metadata)} | ({"context": context} if context else {})


def _metadata_in(obj: dict[str, Any]) -> dict[str, Any]:
    """The stored metadata of a line's `metadata` and `context` (`_metadata_out`), checked."""
    return with_context(check_metadata(obj.get("metadata") or {}), _text(obj, "context", optional=True))


def header(model: str, dimensions: int, memories: int, events: int, with_vectors: bool) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "embedder": model,
        "dimensions": dimensions,
        "vectors": with_vectors,
        "counts": {"memories": memories, "events": events},
        "exported_at": iso_us(int(datetime.now(timezone.utc).timestamp() * 1_000_000)),
    }


def check_header(obj: object) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InvalidInput(f'the first line is not a {FORMAT} export header (no "format": "{FORMAT}")')
    if obj.get("version") != VERSION:
        raise InvalidInput(f"format version {obj.get('version')!r} is not supported (this release reads {VERSION})")
    return obj


def to_json(record: MemoryRecord, events: list[HistoryEntry], vector: list[float] | None) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": record.id,
        "memory": record.memory,
        **_metadata_out(record.metadata),
        "user_id": record.user_id,
        "agent_id": record.agent_id,
        "run_id": record.run_id,
        "created_at": iso_us(record.created_at),
        "updated_at": iso_us(record.updated_at),
        "deleted_at": iso_us(record.deleted_at),
        "history": [
            {
                "id": h.id,
                "event": h.event,
                "old_memory": h.old_memory,
                "new_memory": h.new_memory,
                "created_at": iso_us(h.created_at),
                "at": iso_us(h.updated_at),
                "actor": h.actor,
                "role": h.role,
                "reason": h.reason,
                "source_hash": h.source_hash,
                **(_metadata_out(h.metadata) if h.metadata is not None else {"metadata": None}),
            }
            for h in events
        ],
    }
    if vector is not None:
        line["vector"] = vector
    return line


def from_json(obj: object, max_bytes: int) -> Item:
    """One memory line, checked as the tools check what they store (InvalidInput naming the field);
    `max_bytes`: the largest memory text (MEMORY_MAX_MEMORY_BYTES)."""
    if not isinstance(obj, dict):
        raise InvalidInput("a memory line must be a JSON object")
    memory_id = check_memory_id(obj.get("id"))
    text = check_text(obj.get("memory"), max_bytes)
    scope = check_scope(obj.get("user_id"), obj.get("agent_id"), obj.get("run_id"))
    if scope.is_empty():
        raise InvalidInput("the memory has no user_id, agent_id or run_id: no tool could reach it")
    record = MemoryRecord(
        id=memory_id,
        memory=text,
        hash=text_hash(text),
        metadata=_metadata_in(obj),
        user_id=scope.user_id,
        agent_id=scope.agent_id,
        run_id=scope.run_id,
        created_at=_time(obj, "created_at") or 0,
        updated_at=_time(obj, "updated_at") or 0,
        deleted_at=_time(obj, "deleted_at", optional=True),
    )
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InvalidInput("history must be a list of event objects")
    events = [_event(h, record) for h in history] or _events_of(record)
    if len({h.id for h in events}) < len(events):
        raise InvalidInput("history has the same event id twice")
    _check_ends_in(record, events)
    vector = obj.get("vector")
    if vector is not None and (not isinstance(vector, list) or not all(_finite(x) for x in vector)):
        raise InvalidInput("vector must be a list of finite numbers")
    return record, events, vector


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


_IMPORTED = uuid.UUID("5d0c1a8e-8f4e-4a7e-9a51-3f0e6b2c9d17")  # the namespace of the ids `_events_of` makes


def _events_of(record: MemoryRecord) -> list[HistoryEntry]:
    """The events a line without a history stands for: its ADD, and its DELETE when deleted."""

    def event(kind: Literal["ADD", "DELETE"], at: int) -> HistoryEntry:
        return HistoryEntry(
            id=str(uuid.uuid5(_IMPORTED, f"{record.id} {kind}")),
            memory_id=record.id,
            old_memory=record.memory if kind == "DELETE" else None,
            new_memory=record.memory if kind == "ADD" else None,
            event=kind,
            created_at=record.created_at,
            updated_at=at,
            user_id=record.user_id,
            agent_id=record.agent_id,
            run_id=record.run_id,
            reason="Imported without a history.",
            metadata=record.metadata,
        )

    events = [event("ADD", record.created_at)]
    if record.deleted_at is not None:
        events.append(event("DELETE", record.deleted_at))
    return events


def _check_ends_in(record: MemoryRecord, events: list[HistoryEntry]) -> None:
    """Refuse a history whose last change (the latest ADD / UPDATE / DELETE / RESTORE, the file's
    order among equal times) does not leave the memory as the line states it."""
    changes = sorted((h for h in events if h.event in STATE_EVENTS), key=lambda h: h.updated_at)
    if not changes:
        raise InvalidInput("history has no ADD, UPDATE, DELETE or RESTORE event; omit it to import the memory as added")
    last = changes[-1]
    if record.deleted_at is not None and last.event != "DELETE":
        raise InvalidInput(f"history does not end in the memory's state: it is deleted, its last event is {last.event}")
    if record.deleted_at is None and last.event == "DELETE":
        raise InvalidInput("history does not end in the memory's state: it is live, its last event is a DELETE")
    if record.deleted_at is None and last.new_memory != record.memory:
        raise InvalidInput("history does not end in the memory's state: its last event's new_memory is not its text")


def _event(h: dict[str, Any], record: MemoryRecord) -> HistoryEntry:
    event = h.get("event")
    if event not in EVENTS:
        raise InvalidInput(f"history event {str(event)[:20]!r} is not one of {', '.join(EVENTS)}")
    return HistoryEntry(
        id=check_plain_string(_text(h, "id") or "", "history event id", MAX_EVENT_ID_BYTES, tabs_and_newlines=False),
        memory_id=record.id,
        old_memory=_text(h, "old_memory", optional=True),
        new_memory=_text(h, "new_memory", optional=True),
        event=event,
        created_at=_time(h, "created_at") or 0,
        updated_at=_time(h, "at") or 0,
        user_id=record.user_id,
        agent_id=record.agent_id,
        run_id=record.run_id,
        actor=_text(h, "actor", optional=True),
        role=_text(h, "role", optional=True),
        reason=_text(h, "reason", optional=True),
        source_hash=_text(h, "source_hash", optional=True),
        metadata=None if h.get("metadata") is None else _metadata_in(h),
    )


async def export(
    history: HistoryStore,
    embedder: Embedder,
    where: Node | None,
    out: TextIO,
    *,
    with_vectors: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Write the header and every memory matching `where` (deleted ones too); (memories, events)."""
    memories, events = await history.count_all(where)
    model = embedder.model_id
    out.write(json.dumps(header(model, embedder.dimensions, memories, events, with_vectors)) + "\n")
    after: tuple[int, str] | None = None
    written = 0
    while page := await history.export_page(where, after, PAGE):
        hashes = [r.hash for r, _ in page]
        vectors = await history.embeddings(model, embedder.dimensions, hashes) if with_vectors else {}
        for record, evs in page:
            vector = vectors.get(record.hash) if record.deleted_at is None else None
            out.write(json.dumps(to_json(record, evs, vector), ensure_ascii=False) + "\n")
        written += len(page)
        after = (page[-1][0].created_at, page[-1][0].id)
        if progress is not None:
            progress(written, memories)
    return written, events


class Importer:
    def __init__(self, history: HistoryStore, writes: WriteProtocol, embedder: Embedder, max_bytes: int) -> None:
        self._history = history
        self._writes = writes
        self._embedder = embedder
        self._max_bytes = max_bytes

    async def import_batch(self, lines: list[object], on_conflict: object, file_embedder: object) -> dict[str, Any]:
        """Import memory lines (already checked by the sender, checked again here): counts by
        outcome, and `refused`, [{"index", "id", "error"}] of the lines not imported (index in `lines`)."""
        if on_conflict not in ("skip", "replace"):
            raise InvalidInput('on_conflict must be "skip" or "replace"')
        refused: list[dict[str, Any]] = []
        items: list[Item] = []
        index_of: dict[str, int] = {}
        for index, line in enumerate(lines):
            try:
                item = from_json(line, self._max_bytes)
            except InvalidInput as e:
                refused.append({"index": index, "id": _id_of(line), "error": str(e)})
                continue
            if item[0].id in index_of:
                refused.append({"index": index, "id": item[0].id, "error": "the same memory id is in the batch twice"})
                continue
            index_of[item[0].id] = index
            items.append(item)
        if on_conflict == "skip":
            present = await self._history.existing_ids([r.id for r, _, _ in items])
            items = [i for i in items if i[0].id not in present]
        made_by = signature(self._embedder)
        embedded = await self._with_vectors(items, file_embedder)
        async with self._writes.lock:
            if made_by != signature(self._embedder):  # `reembed` switched the embedder meanwhile
                embedded = await self._with_vectors(items, file_embedder)
            items = embedded
            if on_conflict == "skip":  # one may have come in while the texts were embedded
                present = await self._history.existing_ids([r.id for r, _, _ in items])
                items = [i for i in items if i[0].id not in present]
            items, taken = await self._own_events(items)
            await self._writes.apply_imported(items)
        refused += [{"index": index_of[i], "id": i, "error": e} for i, e in taken.items()]
        refused.sort(key=lambda r: int(r["index"]))
        return {"imported": len(items), "skipped": len(lines) - len(items) - len(refused), "refused": refused}

    async def _own_events(self, items: list[Item]) -> tuple[list[Item], dict[str, str]]:
        """The items whose history event ids are new or already theirs, and why each other one is
        refused: importing it would move another memory's events (or another item's in the batch)."""
        owners = await self._history.event_owners([h.id for _, events, _ in items for h in events])
        claimed: dict[str, str] = {}
        kept: list[Item] = []
        taken: dict[str, str] = {}
        for item in items:
            record, events, _ = item
            for h in events:
                owner = owners.get(h.id) or claimed.get(h.id)
                if owner is not None and owner != record.id:
                    taken[record.id] = f"history event {h.id} belongs to another memory ({owner})"
                    break
            else:
                claimed.update((h.id, record.id) for h in events)
                kept.append(item)
        return kept, taken

    async def _with_vectors(self, items: list[Item], file_embedder: object) -> list[Item]:
        """Each live memory with a vector of the current embedder: the file's (made by
        `file_embedder`), the cache's, or a new one."""
        model, dims = signature(self._embedder)
        reuse = file_embedder == model

        def usable(v: list[float] | None) -> bool:
            return reuse and v is not None and len(v) == dims

        live = [r for r, _, v in items if r.deleted_at is None and not usable(v)]
        stored = await self._history.embeddings(model, dims, [r.hash for r in live])
        missing = sorted({r.memory for r in live if r.hash not in stored})
        if missing:
            stored.update((text_hash(t), v) for t, v in zip(missing, await self._embedder.embed(missing), strict=True))
        out: list[Item] = []
        for r, evs, v in items:
            if r.deleted_at is not None:
                out.append((r, evs, None))
            else:
                out.append((r, evs, v if usable(v) else stored[r.hash]))
        return out


def _id_of(line: object) -> str | None:
    value = line.get("id") if isinstance(line, dict) else None
    return value if isinstance(value, str) else None
