"""Bad input: each call gets a ToolError that names the problem, and nothing stored changes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mcp import Client

from .conftest import call, error_of

pytestmark = pytest.mark.anyio

BIG = "x" * 9000
HOSTILE = 'alice" or 1==1 or "'

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("add_memory", {"messages": "", "user_id": "u"}, "empty"),
    ("add_memory", {"messages": "   \n\t ", "user_id": "u"}, "empty"),
    ("add_memory", {"messages": BIG, "user_id": "u"}, "9000 bytes"),
    ("add_memory", {"messages": "é" * 4500, "user_id": "u"}, "9000 bytes"),  # 4,500 chars, 9,000 UTF-8 bytes
    ("add_memory", {"messages": "nul\x00byte", "user_id": "u"}, "NUL"),
    ("add_memory", {"messages": "no scope"}, "user_id"),
    ("add_memory", {"messages": "x", "user_id": ""}, "user_id is empty"),
    ("add_memory", {"messages": "x", "user_id": "a\x00b"}, "control character"),
    ("add_memory", {"messages": "x", "user_id": "u" * 200}, "longer than 128 bytes"),
    ("add_memory", {"messages": [], "user_id": "u"}, "non-empty list"),
    ("add_memory", {"messages": [{"role": "system", "content": "only system"}], "user_id": "u"}, "only system"),
    ("add_memory", {"messages": "x", "user_id": "u", "metadata": {"bad key!": 1}}, "metadata key"),
    ("add_memory", {"messages": "x", "user_id": "u", "metadata": {"user_id": "bob"}}, "reserved"),
    (
        "add_memory",
        {"messages": "x", "user_id": "u", "metadata": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
        "deeper",
    ),
    ("add_memory", {"messages": "x", "user_id": "u", "metadata": {"blob": "y" * 20000}}, "bytes as JSON"),
    ("add_memory", {"messages": "x", "user_id": "u", "infer": True}, "needs an LLM"),
    ("search_memories", {"query": "", "user_id": "u"}, "empty"),
    ("search_memories", {"query": "q", "user_id": "u", "limit": 0}, "limit"),
    ("search_memories", {"query": "q", "user_id": "u", "limit": 101}, "limit"),
    ("search_memories", {"query": "q", "user_id": "u", "limit": -5}, "limit"),
    ("search_memories", {"query": "q", "user_id": "u", "threshold": 2.0}, "threshold"),
    ("search_memories", {"query": "q", "user_id": "u", "filters": {"x y": 1}}, "filter key"),
    ("search_memories", {"query": "q", "user_id": "u", "filters": {"k": {"$between": 1}}}, "unknown operator"),
    ("search_memories", {"query": "q", "user_id": "u", "filters": {"k": [1, 2]}}, "a list needs an operator"),
    ("search_memories", {"query": "q", "user_id": "u", "filters": {"OR": {"k": 1}}}, "OR takes a non-empty list"),
    ("list_memories", {"user_id": "u", "filters": {"created_at": {"gte": "last week"}}}, "not an ISO-8601 time"),
    ("delete_all_memories", {"user_id": "u", "confirm": True, "filters": {"k": {"in": "x"}}}, "non-empty list"),
    ("search_memories", {"query": "q", "user_id": "u", "filters": {'k"] or true or metadata["k': 1}}, "filter key"),
    ("search_memories", {"query": "q"}, "user_id"),
    ("list_memories", {"user_id": "u", "limit": 5000}, "limit"),
    ("list_memories", {"user_id": "u", "cursor": "not-a-cursor"}, "cursor"),
    ("list_memories", {"user_id": "u", "filters": {"k": None}}, "filter value"),
    ("get_memory", {"memory_id": str(uuid.uuid4())}, "No memory"),
    ("get_memory", {"memory_id": "not-a-uuid"}, "not a valid memory id"),
    ("get_memory", {"memory_id": HOSTILE}, "not a valid memory id"),
    ("update_memory", {"memory_id": str(uuid.uuid4()), "data": "x"}, "No memory"),
    ("delete_memory", {"memory_id": str(uuid.uuid4())}, "No memory"),
    ("delete_memory", {"memory_id": ""}, "memory_id"),
    ("memory_history", {"memory_id": str(uuid.uuid4())}, "No memory"),
    ("delete_all_memories", {"confirm": True}, "needs a scope"),
    ("delete_all_memories", {"user_id": "u"}, "confirm=true"),
    ("delete_all_memories", {"user_id": "u", "confirm": False}, "confirm=true"),
]


@pytest.mark.parametrize(("tool", "args", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_bad_input_gets_clear_error_and_changes_nothing(
    client: Client, tool: str, args: dict[str, Any], expected: str
) -> None:
    keep = (await call(client, "add_memory", messages="A memory that must survive", user_id="u"))["results"][0]
    message = await error_of(client, tool, **args)
    assert expected.lower() in message.lower(), message
    listed = await call(client, "list_memories", user_id="u")
    assert [m["id"] for m in listed["results"]] == [keep["id"]]
    assert listed["results"][0]["memory"] == "A memory that must survive"
    history = await call(client, "memory_history", memory_id=keep["id"])
    assert [e["event"] for e in history["events"]] == ["ADD"]


async def test_update_with_bad_text_leaves_memory_and_history_untouched(client: Client) -> None:
    added = (await call(client, "add_memory", messages="original", user_id="u"))["results"][0]
    for bad in ["", "x" * 9000, "a\x00b"]:
        await error_of(client, "update_memory", memory_id=added["id"], data=bad)
    assert (await call(client, "get_memory", memory_id=added["id"]))["memory"] == "original"
    assert len((await call(client, "memory_history", memory_id=added["id"]))["events"]) == 1


async def test_wrong_argument_types_are_rejected_by_the_schema(client: Client) -> None:
    message = await error_of(client, "search_memories", query="q", user_id="u", limit="ten")
    assert "limit" in message
    message = await error_of(client, "add_memory", messages=[{"role": "wizard", "content": "x"}], user_id="u")
    assert "role" in message
