"""What an agent pays for in context, through a real MCP client on real Milvus Lite + SQLite:
the size of tools/list and of results, compact vs verbose output, max_tokens, the product's own
argument errors, Mem0 habits (scope inside filters, deleting twice), instructions and the prompt."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent

from milvus_memory_mcp import tokens
from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.ranking import EXAMPLE_THRESHOLD
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, error_of

pytestmark = pytest.mark.anyio

NAMES = "Alice Bob Chen Dana Emeka Farah Goran Hana Ivan Jun Kofi Lena".split()
THINGS = "tennis chess climbing pottery sailing baking running swimming knitting surfing".split()
PLACES = "Lisbon Kyoto Nairobi Oslo Lima Hanoi Montreal Porto Seoul Bergen".split()
TEMPLATES = [
    "Plays {t} every Sunday with a friend named {n}.",
    "Is planning a trip to {p} in May with {n}.",
    "Wants to learn {t} before moving to {p}.",
    "Has a sister called {n} who lives in {p}.",
    "Is reading a book about {t} recommended by {n}.",
]


def facts(n: int) -> list[str]:
    rng = random.Random(7)
    out: list[str] = []
    while len(out) < n:
        t = rng.choice(TEMPLATES).format(t=rng.choice(THINGS), n=rng.choice(NAMES), p=rng.choice(PLACES))
        if t not in out:
            out.append(t)
    return out


def wire(obj: Any) -> str:
    """JSON as it goes over the wire (no spaces)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def raw(client: Client, tool: str, **args: Any) -> tuple[str, dict[str, Any]]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    [block] = result.content
    assert isinstance(block, TextContent) and result.structured_content is not None
    return block.text, dict(result.structured_content)


async def test_tools_list_fits_in_10_kb_and_schemas_say_what_is_checked(client: Client) -> None:
    listed = await client.list_tools()
    size = len(wire(listed.model_dump(mode="json", by_alias=True, exclude_none=True)).encode())
    print(f"tools/list: {size} bytes")
    assert size <= 10_000
    tools = {t.name: t for t in listed.tools}
    for t in tools.values():
        assert t.input_schema.get("additionalProperties") is False, t.name
    search = tools["search_memories"].input_schema["properties"]
    assert (search["limit"]["minimum"], search["limit"]["maximum"]) == (1, 100)
    assert (search["threshold"]["minimum"], search["threshold"]["maximum"]) == (-1, 1)
    listing = tools["list_memories"].input_schema["properties"]
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"]) == (1, 1000)
    assert "max_tokens" in search and "max_tokens" in listing and "verbose" in listing


async def test_search_and_list_results_cost_at_most_2_5x_their_memory_texts(client: Client) -> None:
    texts = facts(100)
    for text in texts:
        await call(client, "add_memory", messages=text, user_id="alice", infer=False)
    listed_text, listed = await raw(client, "list_memories", user_id="alice")
    memories = sum(len(r["memory"]) for r in listed["results"])
    assert len(listed["results"]) == 100
    print(f"list 100: {len(listed_text)} chars for {memories} of memory text ({len(listed_text) / memories:.2f}x)")
    assert len(listed_text) <= 2.5 * memories
    found_text, found = await raw(client, "search_memories", query="Who plays tennis on Sundays?", user_id="alice")
    memories = sum(len(r["memory"]) for r in found["results"])
    assert len(found["results"]) == 10
    print(f"search 10: {len(found_text)} chars for {memories} of memory text ({len(found_text) / memories:.2f}x)")
    assert len(found_text) <= 2.5 * memories
    assert json.loads(found_text) == found  # the text block is the structured content


async def test_compact_by_default_verbose_gives_every_field_with_a_value(client: Client) -> None:
    added = await call(client, "add_memory", messages="Likes green tea", user_id="alice", metadata={"k": 1})
    memory_id = added["results"][0]["id"]
    [item] = (await call(client, "list_memories", user_id="alice"))["results"]
    assert item == {"id": memory_id, "memory": "Likes green tea", "metadata": {"k": 1}}
    [hit] = (await call(client, "search_memories", query="tea", user_id="alice"))["results"]
    assert set(hit) == {"id", "memory", "metadata", "score"}
    one = await call(client, "get_memory", memory_id=memory_id)
    assert "hash" not in one and "agent_id" not in one and one["user_id"] == "alice" and "created_at" in one
    full = await call(client, "get_memory", memory_id=memory_id, verbose=True)
    assert full["hash"] and full["updated_at"] and "agent_id" not in full  # null: left out (no null in schemas)
    [verbose_hit] = (await call(client, "search_memories", query="tea", user_id="alice", verbose=True))["results"]
    assert {"hash", "created_at", "updated_at", "user_id"} <= set(verbose_hit)
    history = await call(client, "memory_history", memory_id=memory_id)
    assert history["events"][0].keys() == {"id", "new_memory", "event", "updated_at"}  # id: for restore_memory
    verbose_event = (await call(client, "memory_history", memory_id=memory_id, verbose=True))["events"][0]
    assert {"memory_id", "created_at", "user_id", "is_deleted"} <= set(verbose_event)
    # A scope field the call did not name stays: it tells memories apart.
    await call(client, "add_memory", messages="Prefers aisle seats", user_id="alice", agent_id="travel")
    listed = (await call(client, "list_memories", user_id="alice"))["results"]
    assert [r.get("agent_id") for r in listed] == [None, "travel"]


async def test_max_tokens_cuts_results_and_says_how_to_get_the_rest(client: Client) -> None:
    texts = facts(30)
    for text in texts:
        await call(client, "add_memory", messages=text, user_id="alice", infer=False)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args: dict[str, Any] = {"user_id": "alice", "max_tokens": 300}
        if cursor:
            args["cursor"] = cursor
        text, page = await raw(client, "list_memories", **args)
        assert tokens.count(text) <= 300
        seen += [r["memory"] for r in page["results"]]
        pages += 1
        cursor = page.get("next_cursor")
        if page.get("truncated"):
            assert "next_cursor" in page["note"] and cursor
        if not cursor:
            break
    assert pages > 2 and seen == texts  # every memory once, in order
    text, found = await raw(client, "search_memories", query="tennis", user_id="alice", max_tokens=120)
    assert tokens.count(text) <= 120 and found["truncated"] is True and "max_tokens" in found["note"]
    assert 0 < len(found["results"]) < 10
    _, tiny = await raw(client, "search_memories", query="tennis", user_id="alice", max_tokens=5)
    assert tiny["results"] == [] and "too small" in tiny["note"]
    _, whole = await raw(client, "search_memories", query="tennis", user_id="alice", max_tokens=100_000)
    assert "truncated" not in whole and len(whole["results"]) == 10


@pytest.mark.parametrize("word", ["😀", "Zm9vYmFy"], ids=["emoji", "base64"])
async def test_max_tokens_holds_for_texts_the_tokenizer_cannot_split(client: Client, word: str) -> None:
    """A run of emoji or a base64 blob is one [UNK] to WordPiece whatever its length: counted so, 30
    memories of 8 KB fitted in a budget of 5,000 tokens."""
    blob = word * (2000 // len(word))
    for i in range(30):
        await call(client, "add_memory", messages=f"{i}{blob}", user_id="alice", infer=False)
    for tool, args in [("list_memories", {}), ("search_memories", {"query": blob[:50]})]:
        text, page = await raw(client, tool, user_id="alice", max_tokens=5000, **args)
        assert page["truncated"] is True and 1 <= len(page["results"]) <= 2, (tool, len(page["results"]))
        assert len(text) < 5000


BAD_ARGUMENTS = [
    ("add_memory", {"messages": "x", "user_id": 42}, "user_id", "42"),
    ("search_memories", {"query": "x", "user_id": "a", "filters": "category=hobbies"}, "filters", "JSON object"),
    ("add_memory", {"messages": "x", "user_id": "a", "metadata": "hobbies"}, "metadata", "JSON object"),
    ("delete_all_memories", {"user_id": "a", "confirm": "true"}, "confirm", "JSON boolean true"),
    ("add_memory", {"messages": {"role": "user", "content": "hi"}, "user_id": "a"}, "messages", "list of"),
    ("search_memories", {"query": "x", "user_id": "a", "limit": 0}, "limit", "from 1 to 100"),
    ("search_memories", {"query": "x", "user_id": "a", "limit": "10"}, "limit", "integer"),
    ("list_memories", {"user_id": "a", "limit": True}, "limit", "from 1 to 1000"),
    ("search_memories", {"query": "x", "user_id": "a", "threshold": "0.5"}, "threshold", "number"),
    ("add_memory", {"messages": "x", "user_id": "a", "infer": "false"}, "infer", "JSON boolean"),
    ("search_memories", {"user_id": "a"}, "query", "needs query"),
    ("add_memory", {"messages": [{"role": "user"}], "user_id": "a"}, "messages must be", "list of"),
    ("add_memory", {"messages": [{"role": "boss", "content": "x"}], "user_id": "a"}, "messages must be", "role"),
]


@pytest.mark.parametrize(("tool", "args", "name", "expected"), BAD_ARGUMENTS)
async def test_wrong_types_get_one_line_product_messages(
    client: Client, tool: str, args: dict[str, Any], name: str, expected: str
) -> None:
    message = await error_of(client, tool, **args)
    assert name in message and expected in message, message
    assert "\n" not in message and "pydantic" not in message.lower() and "http" not in message
    assert "validation error" not in message.lower() and "e.g." in message


async def test_unknown_argument_names_the_known_ones(client: Client) -> None:
    message = await error_of(client, "search_memories", query="x", user_id="a", top_k=3)
    assert "top_k" in message and "limit" in message and "query" in message and "\n" not in message


async def test_scope_inside_filters_names_the_scope(client: Client) -> None:
    await call(client, "add_memory", messages="Likes green tea", user_id="alice")
    await call(client, "add_memory", messages="Likes black coffee", user_id="bob")
    listed = await call(client, "list_memories", filters={"user_id": "alice"})
    assert [r["memory"] for r in listed["results"]] == ["Likes green tea"]
    found = await call(client, "search_memories", query="drinks", filters={"user_id": "bob"})
    assert [r["memory"] for r in found["results"]] == ["Likes black coffee"]
    message = await error_of(client, "list_memories", filters={"user_id": {"in": ["alice"]}})
    assert "filters.user_id" in message and "plain string" in message
    assert "filters" in await error_of(client, "list_memories")  # the no-scope message says it counts


async def test_deleting_twice_answers_deleted_false_but_unknown_ids_stay_unknown(service: MemoryService) -> None:
    async with Client(build_server(service)) as client:
        memory_id = (await call(client, "add_memory", messages="Likes tea", user_id="alice"))["results"][0]["id"]
        first = await call(client, "delete_memory", memory_id=memory_id)
        again = await call(client, "delete_memory", memory_id=memory_id)
        assert first["deleted"] is True and again["deleted"] is False and "already deleted" in again["message"]
        never = "5f3dd46a-3d39-489d-9137-ab79be234add"
        assert "No memory" in await error_of(client, "delete_memory", memory_id=never)
    bob = Caller(bound=Scope(user_id="bob"), actor="bob")
    async with Client(build_server(service, lambda: bob)) as as_bob:
        # alice's deleted memory looks exactly like an id that never existed
        assert await error_of(as_bob, "delete_memory", memory_id=memory_id) == (
            await error_of(as_bob, "delete_memory", memory_id=never)
        ).replace(never, memory_id)


async def test_instructions_are_short_and_the_prompt_guides_searching(service: MemoryService) -> None:
    async with Client(build_server(service)) as client:
        instructions = client.instructions
        assert instructions and len(instructions) < 400 and "search_memories" in instructions
        [prompt] = (await client.list_prompts()).prompts
        assert prompt.name == "memory_guide"
        got = await client.get_prompt("memory_guide", {"user_id": "alice"})
        content = got.messages[0].content
        assert isinstance(content, TextContent)
        text = content.text
        assert "search_memories" in text and "add_memory" in text and 'user_id="alice"' in text


async def test_the_seeds_hobbies_query_passes_the_example_threshold_and_unrelated_memories_do_not(
    client: Client,
) -> None:
    tennis = await call(client, "add_memory", messages="I am working on improving my tennis skills.", user_id="a")
    await call(client, "add_memory", messages="I have a linear algebra midterm exam on November 20", user_id="a")
    hits = (await call(client, "search_memories", query="What are Alice's hobbies?", user_id="a"))["results"]
    assert hits[0]["id"] == tennis["results"][0]["id"]
    assert hits[0]["score"] >= EXAMPLE_THRESHOLD > hits[1]["score"]
    kept = await call(
        client, "search_memories", query="What are Alice's hobbies?", user_id="a", threshold=EXAMPLE_THRESHOLD
    )
    assert [h["memory"] for h in kept["results"]] == ["I am working on improving my tennis skills."]
    # a query that nothing stored matches scores under the threshold throughout
    peru = await call(client, "search_memories", query="capital city of Peru", user_id="a")
    assert all(h["score"] < EXAMPLE_THRESHOLD for h in peru["results"])
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert (
        f"e.g. {EXAMPLE_THRESHOLD}" in tools["search_memories"].input_schema["properties"]["threshold"]["description"]
    )
