"""Each tool's happy path through an in-memory MCP client on real Milvus (Lite, a server) + SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from mcp import Client

from ..conftest import ENGINES_AND_HISTORIES, call

pytestmark = [pytest.mark.anyio, ENGINES_AND_HISTORIES]

EXPECTED_TOOLS = {
    "add_memory",
    "search_memories",
    "get_memory",
    "list_memories",
    "update_memory",
    "restore_memory",
    "delete_memory",
    "delete_all_memories",
    "memory_history",
}


async def test_all_tools_are_listed_with_descriptions_annotations_and_output_schemas(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == EXPECTED_TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 20  # short: every byte costs context
        assert tool.output_schema is not None
        assert tool.annotations is not None
    assert tools["search_memories"].annotations.read_only_hint is True
    assert tools["delete_all_memories"].annotations.destructive_hint is True
    props = tools["add_memory"].input_schema["properties"]
    assert {"messages", "user_id", "agent_id", "run_id", "metadata", "infer"} <= set(props)
    assert props["messages"].get("description") and props["user_id"].get("description")


async def test_add_stores_text_verbatim_and_returns_add_event(client: Client) -> None:
    out = await call(client, "add_memory", messages="Prefers window seats", user_id="alice")
    [event] = out["results"]
    assert event["event"] == "ADD" and event["memory"] == "Prefers window seats"
    item = await call(client, "get_memory", memory_id=event["id"], verbose=True)
    assert item["memory"] == "Prefers window seats"
    assert item["hash"] == hashlib.md5(b"Prefers window seats").hexdigest()
    assert item["user_id"] == "alice" and "agent_id" not in item
    assert datetime.fromisoformat(item["created_at"]).utcoffset() is not None


async def test_adding_identical_text_in_same_scope_returns_none_event_not_duplicate(client: Client) -> None:
    first = (await call(client, "add_memory", messages="Lives in Lisbon", user_id="alice"))["results"][0]
    again = (await call(client, "add_memory", messages="Lives in Lisbon", user_id="alice"))["results"][0]
    assert again["event"] == "NONE" and again["id"] == first["id"]
    other = (await call(client, "add_memory", messages="Lives in Lisbon", user_id="bob"))["results"][0]
    assert other["event"] == "ADD" and other["id"] != first["id"]
    listed = await call(client, "list_memories", user_id="alice")
    assert len(listed["results"]) == 1


async def test_add_accepts_message_lists_and_skips_system_messages(client: Client) -> None:
    out = await call(
        client,
        "add_memory",
        messages=[
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": "My dog is called Rex"},
            {"role": "assistant", "content": "Noted: your dog is Rex"},
        ],
        agent_id="pet-bot",
    )
    assert [r["memory"] for r in out["results"]] == ["My dog is called Rex", "Noted: your dog is Rex"]
    history = await call(client, "memory_history", memory_id=out["results"][0]["id"], verbose=True)
    assert history["events"][0]["role"] == "user"


async def test_search_ranks_related_memory_first_with_cosine_scores(client: Client) -> None:
    await call(client, "add_memory", messages="Plays tennis every weekend", user_id="alice")
    await call(client, "add_memory", messages="Has a dentist appointment on Monday", user_id="alice")
    await call(client, "add_memory", messages="Plays the piano", user_id="bob")
    out = await call(client, "search_memories", query="What sport does she play?", user_id="alice", verbose=True)
    hits = out["results"]
    assert [h["memory"] for h in hits][0] == "Plays tennis every weekend"
    assert len(hits) == 2  # bob's memory never appears
    assert hits[0]["score"] >= hits[1]["score"]
    assert all(-1.0 <= h["score"] <= 1.0 for h in hits)
    assert {"id", "memory", "hash", "metadata", "score", "created_at", "updated_at", "user_id"} <= set(hits[0])


async def test_search_threshold_and_limit_drop_results(client: Client) -> None:
    for text in ["Loves hiking in the Alps", "Enjoys mountain trekking", "Owns a red bicycle"]:
        await call(client, "add_memory", messages=text, user_id="u")
    top1 = await call(client, "search_memories", query="hiking", user_id="u", limit=1)
    assert len(top1["results"]) == 1
    # verbose: the exact scores (a compact result rounds them to two places).
    hits = (await call(client, "search_memories", query="hiking", user_id="u", verbose=True))["results"]
    scores = [h["score"] for h in hits]
    cut = await call(client, "search_memories", query="hiking", user_id="u", threshold=scores[0] - 1e-9)
    assert len(cut["results"]) == 1 and scores[1] < scores[0]
    none = await call(client, "search_memories", query="quarterly tax filing deadline", user_id="u", threshold=0.3)
    assert none["results"] == []


async def test_search_and_list_filter_by_metadata_equality(client: Client) -> None:
    await call(client, "add_memory", messages="Tennis on weekends", user_id="a", metadata={"category": "hobbies"})
    await call(client, "add_memory", messages="Exam on November 20", user_id="a", metadata={"category": "task"})
    await call(client, "add_memory", messages="Vegan", user_id="a", metadata={"category": "food", "strict": True})
    hits = await call(client, "search_memories", query="tennis", user_id="a", filters={"category": "task"})
    assert [h["memory"] for h in hits["results"]] == ["Exam on November 20"]
    listed = await call(client, "list_memories", user_id="a", filters={"strict": True})
    assert [m["memory"] for m in listed["results"]] == ["Vegan"]
    listed = await call(client, "list_memories", user_id="a", filters={"category": "hobbies", "strict": True})
    assert listed["results"] == []


async def test_list_paginates_with_cursor_without_gaps_or_duplicates(client: Client) -> None:
    texts = [f"Fact number {i}" for i in range(25)]
    for t in texts:
        await call(client, "add_memory", messages=t, user_id="pager")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        args = {"user_id": "pager", "limit": 10} | ({"cursor": cursor} if cursor else {})
        page = await call(client, "list_memories", **args)
        seen += [m["memory"] for m in page["results"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert pages == 3
    assert seen == texts


async def test_update_reembeds_keeps_created_at_and_sets_updated_at(client: Client) -> None:
    added = (await call(client, "add_memory", messages="Works at Acme", user_id="u", metadata={"k": 1}))["results"][0]
    before = await call(client, "get_memory", memory_id=added["id"], verbose=True)
    updated = await call(client, "update_memory", memory_id=added["id"], data="Works at Globex as a data engineer")
    assert updated["memory"] == "Works at Globex as a data engineer"
    assert updated["created_at"] == before["created_at"]
    assert updated["updated_at"] > before["updated_at"]
    assert updated["metadata"] == {"k": 1}  # kept when omitted
    hits = await call(client, "search_memories", query="Globex data engineer", user_id="u", limit=1)
    assert hits["results"][0]["id"] == added["id"]
    assert hits["results"][0]["memory"] == "Works at Globex as a data engineer"
    replaced = await call(client, "update_memory", memory_id=added["id"], data="Works at Globex", metadata={"k": 2})
    assert replaced["metadata"] == {"k": 2}


async def test_delete_removes_from_search_list_and_get_but_keeps_history(client: Client) -> None:
    added = (await call(client, "add_memory", messages="Drinks oat milk", user_id="u"))["results"][0]
    out = await call(client, "delete_memory", memory_id=added["id"])
    assert out["deleted"] is True
    assert (await call(client, "list_memories", user_id="u"))["results"] == []
    assert (await call(client, "search_memories", query="oat milk", user_id="u"))["results"] == []
    history = await call(client, "memory_history", memory_id=added["id"], verbose=True)
    assert [e["event"] for e in history["events"]] == ["ADD", "DELETE"]
    assert history["events"][1]["is_deleted"] is True
    assert history["events"][1]["old_memory"] == "Drinks oat milk"


async def test_delete_all_needs_confirm_and_deletes_only_that_scope(client: Client) -> None:
    for i in range(3):
        await call(client, "add_memory", messages=f"alice fact {i}", user_id="alice")
    await call(client, "add_memory", messages="bob fact", user_id="bob")
    await call(client, "add_memory", messages="alice agent fact", user_id="alice", agent_id="x")
    out = await call(client, "delete_all_memories", user_id="alice", agent_id="x", confirm=True)
    assert out["deleted_count"] == 1
    out = await call(client, "delete_all_memories", user_id="alice", confirm=True)
    assert out["deleted_count"] == 3
    assert (await call(client, "list_memories", user_id="alice"))["results"] == []
    assert len((await call(client, "list_memories", user_id="bob"))["results"]) == 1


async def test_history_lists_add_update_delete_oldest_first_with_scope(client: Client) -> None:
    added = (await call(client, "add_memory", messages="v1", user_id="h", run_id="r1"))["results"][0]
    await call(client, "update_memory", memory_id=added["id"], data="v2")
    await call(client, "update_memory", memory_id=added["id"], data="v3")
    await call(client, "delete_memory", memory_id=added["id"])
    events = (await call(client, "memory_history", memory_id=added["id"], verbose=True))["events"]
    assert [(e["event"], e.get("old_memory"), e.get("new_memory")) for e in events] == [
        ("ADD", None, "v1"),
        ("UPDATE", "v1", "v2"),
        ("UPDATE", "v2", "v3"),
        ("DELETE", "v3", None),
    ]
    assert all(e["user_id"] == "h" and e["run_id"] == "r1" for e in events)
    assert [e["updated_at"] for e in events] == sorted(e["updated_at"] for e in events)
