"""The server as a real stdio subprocess with its history on PostgreSQL: it serves, survives a bad
call, keeps nothing in the SQLite file, and a restart finds every memory and event again."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from ..conftest import call, error_of
from ..support.postgres_server import PostgresServer
from ..support.processes import params

pytestmark = pytest.mark.anyio


async def test_a_stdio_server_on_a_postgres_history_serves_and_restarts(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database()
    data = tmp_path / "data"
    async with Client(params(data, MEMORY_HISTORY_URL=url), read_timeout_seconds=60) as client:
        added = (await call(client, "add_memory", messages="Has two cats", user_id="s"))["results"][0]
        await call(client, "update_memory", memory_id=added["id"], data="Has three cats")
        assert "empty" in await error_of(client, "add_memory", messages="", user_id="s")
    assert not (data / "history.db").exists()  # the record is in PostgreSQL only
    async with Client(params(data, MEMORY_HISTORY_URL=url), read_timeout_seconds=60) as client:
        hits = (await call(client, "search_memories", query="pets", user_id="s"))["results"]
        assert [h["memory"] for h in hits] == ["Has three cats"]
        events = (await call(client, "memory_history", memory_id=added["id"]))["events"]
        assert [e["event"] for e in events] == ["ADD", "UPDATE"]
