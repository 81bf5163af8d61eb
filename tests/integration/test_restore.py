"""restore_memory (undo): after an UPDATE, after a DELETE, to a named event, and its refusals,
through an in-memory MCP client on real Milvus Lite + SQLite."""

from __future__ import annotations

import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import HISTORIES, call, error_of

pytestmark = [pytest.mark.anyio, HISTORIES]


async def add(client: Client, text: str, **extra: object) -> str:
    out = await call(client, "add_memory", messages=text, user_id="alice", **extra)
    return out["results"][0]["id"]


async def test_restore_undoes_the_last_update_text_and_metadata_and_is_recorded(client: Client) -> None:
    mid = await add(client, "Lives in Lisbon", metadata={"city": "lisbon"})
    await call(client, "update_memory", memory_id=mid, data="Lives in Berlin", metadata={"city": "berlin"})
    restored = await call(client, "restore_memory", memory_id=mid)
    assert restored["memory"] == "Lives in Lisbon" and restored["metadata"] == {"city": "lisbon"}
    assert (await call(client, "get_memory", memory_id=mid))["memory"] == "Lives in Lisbon"
    events = (await call(client, "memory_history", memory_id=mid))["events"]
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "RESTORE"]
    assert events[-1]["old_memory"] == "Lives in Berlin" and events[-1]["new_memory"] == "Lives in Lisbon"
    assert events[0]["id"] in events[-1]["reason"]
    # the vector store agrees: search finds the restored text, not the undone one
    hits = (await call(client, "search_memories", query="Lisbon", user_id="alice"))["results"]
    assert hits[0]["id"] == mid and hits[0]["memory"] == "Lives in Lisbon"
    # a restore is undone like any change
    again = await call(client, "restore_memory", memory_id=mid)
    assert again["memory"] == "Lives in Berlin"


async def test_restore_brings_back_a_deleted_memory(client: Client) -> None:
    mid = await add(client, "Allergic to peanuts")
    await call(client, "delete_memory", memory_id=mid)
    assert "No memory" in await error_of(client, "get_memory", memory_id=mid)
    restored = await call(client, "restore_memory", memory_id=mid)
    assert restored["memory"] == "Allergic to peanuts"
    listed = (await call(client, "list_memories", user_id="alice"))["results"]
    assert [m["id"] for m in listed] == [mid]
    hits = (await call(client, "search_memories", query="peanuts allergy", user_id="alice"))["results"]
    assert [h["id"] for h in hits] == [mid]
    assert [e["event"] for e in (await call(client, "memory_history", memory_id=mid))["events"]] == [
        "ADD",
        "DELETE",
        "RESTORE",
    ]


async def test_restore_to_a_named_event(client: Client) -> None:
    mid = await add(client, "Drives a Fiat")
    await call(client, "update_memory", memory_id=mid, data="Drives a Volvo")
    await call(client, "update_memory", memory_id=mid, data="Drives a Tesla")
    await call(client, "delete_memory", memory_id=mid)
    events = (await call(client, "memory_history", memory_id=mid))["events"]
    first, second = events[0]["id"], events[1]["id"]
    assert (await call(client, "restore_memory", memory_id=mid, event_id=first))["memory"] == "Drives a Fiat"
    assert (await call(client, "restore_memory", memory_id=mid, event_id=second))["memory"] == "Drives a Volvo"
    # the state after a deletion is not something to restore
    deleted = events[3]["id"]
    assert "deleted" in await error_of(client, "restore_memory", memory_id=mid, event_id=deleted)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert "no history event" in await error_of(client, "restore_memory", memory_id=mid, event_id=unknown)


async def test_restore_of_a_memory_never_changed_says_there_is_nothing_to_restore(client: Client) -> None:
    mid = await add(client, "Has a cat")
    assert "no earlier state" in await error_of(client, "restore_memory", memory_id=mid)
    assert len((await call(client, "memory_history", memory_id=mid))["events"]) == 1


async def test_a_read_only_caller_is_refused_and_another_users_id_looks_unknown(service: MemoryService) -> None:
    async with Client(build_server(service)) as owner:
        mid = await add(owner, "Works at Acme")
        await call(owner, "update_memory", memory_id=mid, data="Works at Initech")
    async with Client(build_server(service, lambda: Caller(read_only=True))) as reader:
        assert "read-only" in await error_of(reader, "restore_memory", memory_id=mid)
    async with Client(build_server(service, lambda: Caller(bound=Scope(user_id="bob")))) as bob:
        message = await error_of(bob, "restore_memory", memory_id=mid)
        assert f"No memory '{mid}'" in message
    async with Client(build_server(service)) as owner:
        assert (await call(owner, "get_memory", memory_id=mid))["memory"] == "Works at Initech"
        assert len((await call(owner, "memory_history", memory_id=mid))["events"]) == 2
