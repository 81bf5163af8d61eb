"""Bad input across every tool: each call gets a ToolError that names the problem, and nothing stored changes.

`CASES` are calls without a caller; `CALLER_CASES` go through a client bound to user "bob" or a
read-only one where the case says so, to check that ids and scopes of another user are refused
exactly like unknown ones. After each of those, both stores are compared: alice's memory, its
history and the vector store are as before.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client

from milvus_memory_mcp import doctor
from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, error_of

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
    # "$" in a pattern matches before a final newline: the whole key must match
    ("add_memory", {"messages": "x", "user_id": "u", "metadata": {"tag\n": 1}}, "metadata key"),
    ("add_memory", {"messages": "x", "user_id": "u", "metadata": {"user_id\n": "bob"}}, "metadata key"),
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


ALICE = "ALICE_MEMORY_ID"  # replaced by the id of alice's memory
DEEP: dict[str, Any] = {"a": [[[[[1]]]]]}  # lists count as levels too
# (tool, args, expected text in the error, caller: "anyone" | "bob" (bound to user bob) | "reader" (read-only))
CALLER_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # another scope's ids and scopes, through a credential bound to bob
    ("get_memory", {"memory_id": ALICE}, "No memory", "bob"),
    ("update_memory", {"memory_id": ALICE, "data": "hijacked"}, "No memory", "bob"),
    ("delete_memory", {"memory_id": ALICE}, "No memory", "bob"),
    ("memory_history", {"memory_id": ALICE}, "No memory", "bob"),
    ("restore_memory", {"memory_id": ALICE}, "No memory", "bob"),
    ("restore_memory", {"memory_id": ALICE}, "read-only", "reader"),
    ("restore_memory", {"memory_id": ALICE}, "no earlier state", "anyone"),
    ("restore_memory", {"memory_id": ALICE, "event_id": "x" * 200}, "event_id must be", "anyone"),
    ("list_memories", {"user_id": "alice", "as_of": "yesterday"}, "as_of must be an ISO-8601 time", "anyone"),
    ("list_memories", {"user_id": "alice"}, "limited to user_id='bob'", "bob"),
    ("search_memories", {"query": "tennis", "user_id": "alice"}, "limited to user_id='bob'", "bob"),
    ("add_memory", {"messages": "planted", "user_id": "alice"}, "limited to user_id='bob'", "bob"),
    ("delete_all_memories", {"user_id": "alice", "confirm": True}, "limited to user_id='bob'", "bob"),
    # a read-only credential
    ("add_memory", {"messages": "x", "user_id": "alice"}, "read-only", "reader"),
    ("update_memory", {"memory_id": ALICE, "data": "x"}, "read-only", "reader"),
    ("delete_memory", {"memory_id": ALICE}, "read-only", "reader"),
    ("delete_all_memories", {"user_id": "alice", "confirm": True}, "read-only", "reader"),
    # types
    ("add_memory", {"messages": 42, "user_id": "alice"}, "messages", "anyone"),
    ("add_memory", {"messages": "x", "user_id": 7}, "user_id", "anyone"),
    ("add_memory", {"messages": "x", "user_id": "alice", "metadata": ["not", "a", "dict"]}, "metadata", "anyone"),
    ("add_memory", {"messages": [{"role": "user"}], "user_id": "alice"}, "content", "anyone"),
    ("update_memory", {"memory_id": ALICE, "data": 3.5}, "data", "anyone"),
    ("update_memory", {"memory_id": ALICE, "data": "x", "metadata": "category=hobbies"}, "metadata", "anyone"),
    ("get_memory", {"memory_id": 12345}, "memory_id", "anyone"),
    ("delete_all_memories", {"user_id": "alice", "confirm": "yes"}, "confirm", "anyone"),
    ("search_memories", {"query": "q", "user_id": "alice", "threshold": "high"}, "threshold", "anyone"),
    # sizes and limits
    ("add_memory", {"messages": ["x"] * 3, "user_id": "alice"}, "messages", "anyone"),
    (
        "add_memory",
        {"messages": [{"role": "user", "content": f"m{i}"} for i in range(101)], "user_id": "alice"},
        "limit is 100",
        "anyone",
    ),
    (
        "add_memory",
        {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "z" * 9000}], "user_id": "alice"},
        "messages[1].content",
        "anyone",
    ),
    ("update_memory", {"memory_id": ALICE, "data": "ü" * 5000}, "10000 bytes", "anyone"),
    ("list_memories", {"user_id": "alice", "limit": 0}, "limit", "anyone"),
    ("list_memories", {"user_id": "alice", "limit": -1}, "limit", "anyone"),
    ("search_memories", {"query": "q" * 9000, "user_id": "alice"}, "query is 9000 bytes", "anyone"),
    ("search_memories", {"query": "q", "user_id": "alice", "threshold": -1.5}, "threshold", "anyone"),
    # unicode, NUL bytes, control characters
    ("add_memory", {"messages": "x", "user_id": "alice", "metadata": {"k": "a\x00b"}}, "NUL", "anyone"),
    ("add_memory", {"messages": "x", "user_id": "alice", "metadata": {"clé": 1}}, "metadata key", "anyone"),
    ("add_memory", {"messages": "x", "agent_id": "agent\x07bell"}, "control character", "anyone"),
    ("add_memory", {"messages": "x", "run_id": "r" * 43 + "\u00e9" * 43}, "longer than 128 bytes", "anyone"),
    ("update_memory", {"memory_id": ALICE, "data": "before\x00after"}, "NUL", "anyone"),
    ("search_memories", {"query": "\x00", "user_id": "alice"}, "NUL", "anyone"),
    ("get_memory", {"memory_id": "\u0661" * 32}, "not a valid memory id", "anyone"),
    # huge and deep metadata
    (
        "add_memory",
        {"messages": "x", "user_id": "alice", "metadata": {f"k{i}": "v" * 100 for i in range(200)}},
        "bytes as JSON",
        "anyone",
    ),
    ("add_memory", {"messages": "x", "user_id": "alice", "metadata": DEEP}, "deeper", "anyone"),
    (
        "update_memory",
        {"memory_id": ALICE, "data": "x", "metadata": {"a": {"b": {"c": {"d": {"e": {}}}}}}},
        "deeper",
        "anyone",
    ),
    # unknown ids and hostile strings
    ("update_memory", {"memory_id": "'; DROP TABLE memories; --", "data": "x"}, "not a valid memory id", "anyone"),
    ("delete_memory", {"memory_id": 'x" or id != "'}, "not a valid memory id", "anyone"),
    ("memory_history", {"memory_id": "../../etc/passwd"}, "not a valid memory id", "anyone"),
    ("get_memory", {"memory_id": str(uuid.UUID(int=0))}, "No memory", "anyone"),
    ("list_memories", {"user_id": "alice", "cursor": "eyJhIjogMX0"}, "cursor", "anyone"),
    ("list_memories", {"user_id": "alice", "filters": {"category": "x\x01y"}}, "control character", "anyone"),
    ("delete_all_memories", {"user_id": "alice", "agent_id": "", "confirm": True}, "agent_id is empty", "anyone"),
]

CALLERS = {"anyone": Caller(), "bob": Caller(bound=Scope(user_id="bob")), "reader": Caller(read_only=True)}


@pytest.fixture
async def clients(service: MemoryService) -> AsyncIterator[dict[str, Client]]:
    async with (
        Client(build_server(service, lambda: CALLERS["anyone"])) as anyone,
        Client(build_server(service, lambda: CALLERS["bob"])) as bob,
        Client(build_server(service, lambda: CALLERS["reader"])) as reader,
    ):
        yield {"anyone": anyone, "bob": bob, "reader": reader}


def test_the_two_tables_hold_at_least_forty_cases_across_every_tool() -> None:
    assert len(CASES) + len(CALLER_CASES) >= 40
    tools = {c[0] for c in CASES} | {c[0] for c in CALLER_CASES}
    assert len(tools) == 9


@pytest.mark.parametrize(
    ("tool", "args", "expected", "who"), CALLER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLER_CASES)]
)
async def test_bad_input_by_any_caller_gets_clear_error_and_changes_both_stores_nothing(
    clients: dict[str, Client], service: MemoryService, tool: str, args: dict[str, Any], expected: str, who: str
) -> None:
    anyone = clients["anyone"]
    alice = (await call(anyone, "add_memory", messages="Plays tennis", user_id="alice"))["results"][0]
    bobs = (await call(anyone, "add_memory", messages="Bob's own fact", user_id="bob"))["results"][0]
    args = {k: alice["id"] if v == ALICE else v for k, v in args.items()}
    message = await error_of(clients[who], tool, **args)
    assert expected.lower() in message.lower(), message
    for memory, user in [(alice, "alice"), (bobs, "bob")]:
        listed = (await call(anyone, "list_memories", user_id=user))["results"]
        assert [(m["id"], m["memory"]) for m in listed] == [(memory["id"], memory["memory"])]
        history = (await call(anyone, "memory_history", memory_id=memory["id"]))["events"]
        assert [e["event"] for e in history] == ["ADD"]
    report = await doctor.check(service)
    assert report.clean and report.rows == 2, report.lines()
