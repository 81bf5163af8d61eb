"""Scopes never leak: hostile scope values and metadata are stored and matched literally."""

from __future__ import annotations

import pytest
from mcp import Client

from ..conftest import ENGINES, call

pytestmark = [pytest.mark.anyio, ENGINES]

HOSTILE = [
    'alice" or 1==1 or "',
    "alice' or '1'=='1",
    'back\\slash\\"',
    "ünïcødé-用户-🙂",
    'x") or (user_id != "',
    "%",
    "a\\",
]


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_user_id_is_stored_literally_and_never_widens_a_query(client: Client, hostile: str) -> None:
    await call(client, "add_memory", messages="alice secret: loves jazz", user_id="alice")
    await call(client, "add_memory", messages="bob secret: loves metal", user_id="bob")
    mine = (await call(client, "add_memory", messages="hostile's own memory", user_id=hostile))["results"][0]

    hits = (await call(client, "search_memories", query="what music do they love", user_id=hostile, verbose=True))[
        "results"
    ]
    assert [h["id"] for h in hits] == [mine["id"]]
    assert hits[0]["user_id"] == hostile
    listed = (await call(client, "list_memories", user_id=hostile))["results"]
    assert [m["id"] for m in listed] == [mine["id"]]
    out = await call(client, "delete_all_memories", user_id=hostile, confirm=True)
    assert out["deleted_count"] == 1
    assert len((await call(client, "list_memories", user_id="alice"))["results"]) == 1
    assert len((await call(client, "list_memories", user_id="bob"))["results"]) == 1


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_metadata_values_filter_literally(client: Client, hostile: str) -> None:
    await call(
        client, "add_memory", messages="tagged", user_id="u", metadata={"tag": hostile, "nested": {"q": hostile}}
    )
    await call(client, "add_memory", messages="other", user_id="u", metadata={"tag": "plain"})
    hits = (await call(client, "search_memories", query="tagged", user_id="u", filters={"tag": hostile}))["results"]
    assert [h["memory"] for h in hits] == ["tagged"]
    assert hits[0]["metadata"] == {"tag": hostile, "nested": {"q": hostile}}
    listed = (await call(client, "list_memories", user_id="u", filters={"tag": hostile}))["results"]
    assert [m["memory"] for m in listed] == ["tagged"]


async def test_scope_fields_combine_with_and(client: Client) -> None:
    await call(client, "add_memory", messages="alice with planner", user_id="alice", agent_id="planner")
    await call(client, "add_memory", messages="alice with coder", user_id="alice", agent_id="coder")
    await call(client, "add_memory", messages="bob with planner", user_id="bob", agent_id="planner")
    only = (await call(client, "list_memories", user_id="alice", agent_id="planner"))["results"]
    assert [m["memory"] for m in only] == ["alice with planner"]
    planner = (await call(client, "search_memories", query="planner", agent_id="planner"))["results"]
    assert {m["memory"] for m in planner} == {"alice with planner", "bob with planner"}
    by_filter = (await call(client, "list_memories", user_id="alice", filters={"user_id": "bob"}))["results"]
    assert by_filter == []  # a filter can narrow a scope, never widen it
