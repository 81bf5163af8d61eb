"""Filter integers beyond 64 bits (what SQLite and Milvus store) are refused with a clear message
instead of a bare OverflowError; the bounds themselves and large floats still work."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from ..conftest import call, error_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "filters",
    [
        {"n": 10**30},
        {"n": {"gt": -(10**30)}},
        {"n": {"in": [1, 2**63]}},
        {"OR": [{"n": 1}, {"NOT": {"n": {"lte": -(2**63) - 1}}}]},
        {"tags": {"contains": 10**19}},
    ],
)
@pytest.mark.parametrize("tool", ["list_memories", "search_memories", "delete_all_memories"])
async def test_filter_integers_beyond_64_bits_are_refused(client: Client, tool: str, filters: dict[str, Any]) -> None:
    kept = await call(client, "add_memory", messages="Has 3 cats", user_id="u", metadata={"n": 3})
    args: dict[str, Any] = {"user_id": "u", "filters": filters}
    if tool == "search_memories":
        args["query"] = "cats"
    if tool == "delete_all_memories":
        args["confirm"] = True
    message = await error_of(client, tool, **args)
    assert "is an integer outside the signed 64-bit range" in message and "'" in message, message
    listed = (await call(client, "list_memories", user_id="u"))["results"]
    assert [m["id"] for m in listed] == [kept["results"][0]["id"]]


async def test_the_64_bit_bounds_and_large_floats_filter_normally(client: Client) -> None:
    await call(client, "add_memory", messages="Has 3 cats", user_id="u", metadata={"n": 3})
    for filters, found in [
        ({"n": {"gt": -(2**63), "lt": 2**63 - 1}}, 1),
        ({"n": {"lt": 1e300}}, 1),
        ({"n": 2**63 - 1}, 0),
    ]:
        listed = (await call(client, "list_memories", user_id="u", filters=filters))["results"]
        hits = (await call(client, "search_memories", query="cats", user_id="u", filters=filters))["results"]
        assert (len(listed), len(hits)) == (found, found), filters
