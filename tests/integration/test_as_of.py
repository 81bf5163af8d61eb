"""Time travel: `as_of` on search_memories and list_memories answers from the history, before and
after an update and a delete, through an in-memory MCP client on real Milvus Lite + SQLite."""

from __future__ import annotations

from datetime import datetime, timezone

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp.history import make_history
from milvus_memory_mcp.service import MemoryService

from ..conftest import HISTORIES, call, error_of

pytestmark = [pytest.mark.anyio, HISTORIES]


async def moment() -> str:
    """An ISO time strictly between the events before and after it."""
    await anyio.sleep(0.01)
    t = datetime.now(timezone.utc).isoformat()
    await anyio.sleep(0.01)
    return t


async def texts(client: Client, tool: str, **args: object) -> list[str]:
    return [m["memory"] for m in (await call(client, tool, user_id="alice", **args))["results"]]


async def test_as_of_before_and_after_an_update_and_a_delete(client: Client) -> None:
    t0 = await moment()
    home = (await call(client, "add_memory", messages="Lives in Lisbon", user_id="alice", metadata={"k": "home"}))[
        "results"
    ][0]["id"]
    await call(client, "add_memory", messages="Plays the cello", user_id="alice")
    t1 = await moment()
    await call(client, "update_memory", memory_id=home, data="Lives in Berlin", metadata={"k": "moved"})
    t2 = await moment()
    await call(client, "delete_memory", memory_id=home)
    t3 = await moment()

    assert await texts(client, "list_memories", as_of=t0) == []
    assert await texts(client, "list_memories", as_of=t1) == ["Lives in Lisbon", "Plays the cello"]
    assert await texts(client, "list_memories", as_of=t2) == ["Lives in Berlin", "Plays the cello"]
    assert await texts(client, "list_memories", as_of=t3) == ["Plays the cello"]
    assert await texts(client, "list_memories") == ["Plays the cello"]
    # metadata as it stood, and filters apply to it
    assert await texts(client, "list_memories", as_of=t1, filters={"k": "home"}) == ["Lives in Lisbon"]
    assert await texts(client, "list_memories", as_of=t2, filters={"k": "home"}) == []

    # the superseded and the deleted versions are searchable at their time
    assert (await texts(client, "search_memories", query="Lisbon", as_of=t1))[0] == "Lives in Lisbon"
    at_t2 = await texts(client, "search_memories", query="where does she live", as_of=t2)
    assert at_t2[0] == "Lives in Berlin" and "Lives in Lisbon" not in at_t2
    assert "Lives in Berlin" not in await texts(client, "search_memories", query="Berlin", as_of=t3)
    assert await texts(client, "search_memories", query="Berlin", as_of=t0) == []
    # the present is unchanged
    assert "Lives in Berlin" not in await texts(client, "search_memories", query="Berlin")


async def test_as_of_pages_with_cursors_and_stays_within_the_scope(client: Client) -> None:
    for i in range(5):
        await call(client, "add_memory", messages=f"Fact number {i}", user_id="alice")
    await call(client, "add_memory", messages="Fact of bob", user_id="bob")
    t = await moment()
    page = await call(client, "list_memories", user_id="alice", as_of=t, limit=3)
    rest = await call(client, "list_memories", user_id="alice", as_of=t, limit=3, cursor=page["next_cursor"])
    assert [m["memory"] for m in page["results"] + rest["results"]] == [f"Fact number {i}" for i in range(5)]
    assert rest.get("next_cursor") is None
    assert "Fact of bob" not in await texts(client, "search_memories", query="Fact of bob", as_of=t)


async def test_a_bad_as_of_is_refused_with_a_clear_message(client: Client) -> None:
    message = await error_of(client, "list_memories", user_id="alice", as_of="last tuesday")
    assert "as_of must be an ISO-8601 time" in message


async def test_as_of_searches_reuse_their_index_until_the_history_changes(
    client: Client, service: MemoryService
) -> None:
    await call(client, "add_memory", messages="Drinks oolong tea", user_id="alice")
    later = "2999-01-01T00:00:00Z"  # after every write: the memories as they stand now
    assert await texts(client, "search_memories", query="tea", as_of=later) == ["Drinks oolong tea"]
    first = service._past._cache.copy()  # pyright: ignore[reportPrivateUsage]
    assert await texts(client, "search_memories", query="tea", as_of=later) == ["Drinks oolong tea"]
    assert service._past._cache == first  # pyright: ignore[reportPrivateUsage]  # the same index, not rebuilt
    # a write in this process is seen by the next as_of search ...
    added = await call(client, "add_memory", messages="Drinks green tea", user_id="alice")
    assert sorted(await texts(client, "search_memories", query="tea", as_of=later)) == [
        "Drinks green tea",
        "Drinks oolong tea",
    ]
    # ... and so is a commit to the database by another connection (another process)
    mark = await service.history.change_mark()
    other = make_history(service.settings)  # SQLite or PostgreSQL, as the service
    await other.open()
    try:
        await other.save_embeddings("another-model", [(added["results"][0]["id"], "text", [1.0, 0.0])])
    finally:
        await other.close()
    assert await service.history.change_mark() != mark
