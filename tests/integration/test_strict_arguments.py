"""Numbers and booleans of the tools are not coerced from other JSON types: the call is refused
with a message naming the argument, and the schema still says integer / number / boolean."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from ..conftest import call, error_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("search_memories", {"query": "tea", "limit": "10"}, "limit must be an integer"),
        ("search_memories", {"query": "tea", "limit": True}, "limit must be an integer"),
        ("search_memories", {"query": "tea", "limit": 2.5}, "limit must be an integer"),
        ("search_memories", {"query": "tea", "threshold": "0.5"}, "threshold must be a number"),
        ("search_memories", {"query": "tea", "threshold": True}, "threshold must be a number"),
        ("list_memories", {"limit": "10"}, "limit must be an integer"),
        ("list_memories", {"limit": False}, "limit must be an integer"),
        ("add_memory", {"messages": "Likes tea", "infer": "false"}, "infer must be a JSON boolean"),
        ("add_memory", {"messages": "Likes tea", "infer": 0}, "infer must be a JSON boolean"),
    ],
)
async def test_wrongly_typed_numbers_and_booleans_are_refused(
    client: Client, tool: str, args: dict[str, Any], expected: str
) -> None:
    message = await error_of(client, tool, user_id="u", **args)
    assert expected in message, message
    assert (await call(client, "list_memories", user_id="u"))["results"] == []  # nothing was stored


async def test_well_typed_numbers_still_work(client: Client) -> None:
    await call(client, "add_memory", messages="Likes green tea", user_id="u")
    hits = (await call(client, "search_memories", query="tea", user_id="u", limit=5, threshold=0))["results"]
    assert [h["memory"] for h in hits] == ["Likes green tea"]
    assert len((await call(client, "list_memories", user_id="u", limit=1))["results"]) == 1


async def test_the_schema_keeps_the_json_types_one_type_each_and_null_still_means_omitted(client: Client) -> None:
    tools = {t.name: t.input_schema["properties"] for t in (await client.list_tools()).tools}
    assert tools["search_memories"]["limit"]["type"] == "integer"
    assert tools["list_memories"]["limit"]["type"] == "integer"
    # Optional arguments are written without their null branch (portable to one-type dialects) ...
    assert tools["search_memories"]["threshold"]["type"] == "number"
    assert tools["add_memory"]["infer"]["type"] == "boolean"
    # ... and a client that sends null anyway is understood as leaving the argument out.
    await call(client, "add_memory", messages="Likes green tea", user_id="n", infer=None)
    hits = (await call(client, "search_memories", query="tea", user_id="n", threshold=None, as_of=None))["results"]
    assert [h["memory"] for h in hits] == ["Likes green tea"]
