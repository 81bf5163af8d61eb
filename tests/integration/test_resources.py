"""MCP resources: a user's memories and a memory's history as text, within the caller's bound
scope, through an in-memory MCP client on real Milvus Lite + SQLite."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import call

pytestmark = pytest.mark.anyio


async def text_of(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    return "\n".join(getattr(c, "text", "") for c in result.contents)


async def test_memories_and_history_resources(client: Client) -> None:
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert {"memory://{user_id}/memories", "memory://memories/{memory_id}/history"} <= templates
    mid = (await call(client, "add_memory", messages="Plays tennis", user_id="alice"))["results"][0]["id"]
    await call(client, "add_memory", messages="Likes jazz", user_id="alice")
    await call(client, "add_memory", messages="Likes rock", user_id="bob")
    await call(client, "update_memory", memory_id=mid, data="Plays squash")
    memories = await text_of(client, "memory://alice/memories")
    assert memories.splitlines()[0].startswith("- Plays squash (id " + mid)
    assert "Likes jazz" in memories and "Likes rock" not in memories
    assert "No memories" in await text_of(client, "memory://carol/memories")
    history = (await text_of(client, f"memory://memories/{mid}/history")).splitlines()
    assert [line.split()[1] for line in history] == ["ADD:", "UPDATE:"]
    assert history[1].endswith(")") and "Plays squash" in history[1]


async def test_memories_resource_is_bounded(client: Client) -> None:
    for i in range(105):
        await call(client, "add_memory", messages=f"Fact {i}", user_id="alice", infer=False)
    lines = (await text_of(client, "memory://alice/memories")).splitlines()
    assert len(lines) == 101 and lines[-1].startswith("More memories: call list_memories with cursor")


async def test_resources_stay_within_the_callers_bound_scope(service: MemoryService) -> None:
    async with Client(build_server(service)) as owner:
        mid = (await call(owner, "add_memory", messages="Plays tennis", user_id="alice"))["results"][0]["id"]
    async with Client(build_server(service, lambda: Caller(bound=Scope(user_id="bob")))) as bob:
        with pytest.raises(MCPError, match="limited to user_id='bob'"):
            await bob.read_resource("memory://alice/memories")
        with pytest.raises(MCPError, match="No memory"):
            await bob.read_resource(f"memory://memories/{mid}/history")
        assert "No memories" in await text_of(bob, "memory://bob/memories")
    async with Client(build_server(service, lambda: Caller(read_only=True))) as reader:
        assert "Plays tennis" in await text_of(reader, "memory://alice/memories")
