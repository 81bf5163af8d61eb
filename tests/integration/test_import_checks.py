"""An imported line is held to what the tools accept, and takes nothing from a stored memory: a line
that fails is refused alone, by name, and the rest of the batch is imported."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import HISTORIES

pytestmark = [pytest.mark.anyio, HISTORIES]
WHEN = "2024-01-01T00:00:00+00:00"


def line(text: str = "Sails on weekends", user_id: str | None = "alice", **extra: Any) -> dict[str, Any]:
    """A memory line as `export` writes it, with new ids."""
    event = {"id": str(uuid.uuid4()), "event": "ADD", "new_memory": text, "created_at": WHEN, "at": WHEN}
    return {
        "id": str(uuid.uuid4()),
        "memory": text,
        "metadata": {},
        "user_id": user_id,
        "created_at": WHEN,
        "updated_at": WHEN,
        "history": [event],
    } | extra


def with_event(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return base | {"history": [base["history"][0] | fields]}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (line("x" * 8193), "memory text is 8193 bytes in UTF-8; the limit is 8192"),
        (line("x" * 70_000), "the limit is 8192"),  # more than Milvus's VARCHAR keeps, too
        (line("   "), "memory text is empty"),
        (line("Sails\x00on weekends"), "NUL"),
        (line(user_id=None), "no user_id, agent_id or run_id"),
        (line(vector=[math.nan] * 384), "vector must be a list of finite numbers"),
        (line(vector=[math.inf] + [0.0] * 383), "finite numbers"),
        (line(vector=[True] * 384), "finite numbers"),
        (with_event(line(), reason="bad \ud800 text"), "reason contains a NUL character or a lone UTF-16 surrogate"),
        (with_event(line(), id="a\x1bb"), "history event id contains a control character"),
        (with_event(line(), new_memory="Sails on Sundays"), "its last event's new_memory is not its text"),
        (line(deleted_at=WHEN), "it is deleted, its last event is ADD"),
        (with_event(line(), event="DELETE"), "it is live, its last event is a DELETE"),
        (with_event(line(), event="NONE"), "history has no ADD, UPDATE, DELETE or RESTORE event"),
    ],
    ids=[
        "text-over-the-limit",
        "text-over-milvus-varchar",
        "blank-text",
        "nul",
        "no-scope",
        "nan-vector",
        "infinite-vector",
        "boolean-vector",
        "surrogate-in-event",
        "control-in-event-id",
        "history-ends-in-another-text",
        "deleted-but-history-ends-live",
        "live-but-history-ends-deleted",
        "history-of-no-change",
    ],
)
async def test_a_line_the_tools_would_refuse_is_refused_alone(
    service: MemoryService, bad: dict[str, Any], expected: str
) -> None:
    good = line("Keeps bees")
    outcome = await service.import_batch([bad, good], "skip", service.embedder.model_id)
    assert outcome["imported"] == 1 and outcome["skipped"] == 0, outcome
    [refused] = outcome["refused"]
    assert refused["index"] == 0 and refused["id"] == bad["id"] and expected in refused["error"], refused
    assert [m.memory for m in (await service.list(Scope("alice"))).results] == ["Keeps bees"]
    assert await service.history.get(bad["id"]) is None
    await service.flush()
    assert (await doctor.check(service)).clean


async def test_an_event_id_of_another_memory_is_refused_and_its_history_kept(service: MemoryService) -> None:
    kept = (await service.add("Drinks tea", Scope("alice"), infer=False)).results[0].id
    await service.update(kept, "Drinks green tea")
    events = (await service.memory_history(kept)).events
    assert [e.event for e in events] == ["ADD", "UPDATE"]
    thief = with_event(line("Drinks coffee"), id=events[1].id)
    for mode in ("skip", "replace"):
        outcome = await service.import_batch([thief], mode, None)
        assert outcome["imported"] == 0, outcome
        [refused] = outcome["refused"]
        assert refused["error"] == f"history event {events[1].id} belongs to another memory ({kept})", refused
        assert [e.id for e in (await service.memory_history(kept)).events] == [e.id for e in events]
        assert await service.history.get(thief["id"]) is None

    # Within one batch: the first line to claim an event id keeps it.
    first, second = line("Plays chess"), line("Plays go")
    second = with_event(second, id=first["history"][0]["id"])
    outcome = await service.import_batch([first, second], "skip", None)
    assert outcome["imported"] == 1 and [r["index"] for r in outcome["refused"]] == [1], outcome
    assert "belongs to another memory" in outcome["refused"][0]["error"]


async def test_the_same_memory_id_twice_in_a_batch_imports_the_first(service: MemoryService) -> None:
    first = line("Plays chess")
    second = line("Plays go") | {"id": first["id"]}
    outcome = await service.import_batch([first, second], "replace", None)
    assert outcome["imported"] == 1 and outcome["skipped"] == 0, outcome
    assert [(r["index"], r["error"]) for r in outcome["refused"]] == [(1, "the same memory id is in the batch twice")]
    record = await service.history.get(first["id"])
    assert record is not None and record.memory == "Plays chess"
    assert [e.id for e in (await service.memory_history(first["id"])).events] == [first["history"][0]["id"]]


async def test_an_event_id_already_its_own_is_replaced_in_place(service: MemoryService) -> None:
    imported = line("Plays chess")
    assert (await service.import_batch([imported], "skip", None))["imported"] == 1
    again = with_event(imported | {"memory": "Plays go"}, new_memory="Plays go")
    outcome = await service.import_batch([again], "replace", None)
    assert outcome == {"imported": 1, "skipped": 0, "refused": []}
    events = (await service.memory_history(imported["id"])).events
    assert [(e.id, e.new_memory) for e in events] == [(imported["history"][0]["id"], "Plays go")]


@pytest.mark.parametrize("deleted", [False, True], ids=["live", "deleted"])
async def test_a_line_without_a_history_gets_the_events_it_stands_for(service: MemoryService, deleted: bool) -> None:
    later = "2024-02-01T00:00:00+00:00"
    bare = line("Keeps bees", history=[], deleted_at=later if deleted else None)
    for _ in range(2):  # importing it again, replacing it, gives the same events
        assert (await service.import_batch([bare], "replace", None))["imported"] == 1
    events = await service.history.history(bare["id"])
    assert [(h.event, h.new_memory) for h in events] == [("ADD", "Keeps bees")] + (
        [("DELETE", None)] if deleted else []
    )
    assert all(h.reason == "Imported without a history." for h in events)
    alice = Scope("alice")
    now = "2030-01-01T00:00:00+00:00"
    for as_of in (None, now):
        listed = [m.memory for m in (await service.list(alice, as_of=as_of)).results]
        assert listed == ([] if deleted else ["Keeps bees"])
    assert [m.memory for m in (await service.list(alice, as_of="2024-01-15T00:00:00+00:00")).results] == ["Keeps bees"]
    if deleted:  # undone like a deletion made here
        assert (await service.restore(bare["id"])).memory == "Keeps bees"
        assert [m.memory for m in (await service.list(alice)).results] == ["Keeps bees"]
    await service.flush()
    assert (await doctor.check(service)).clean
