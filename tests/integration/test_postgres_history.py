"""The history on PostgreSQL (MEMORY_HISTORY_URL): the filter renderer agreeing with SQLite's on
real data, a walk through the tools and export / import, its migrations, the change marks other
processes move, atomic transactions, and clear errors for a bad or unreachable URL. The tool
modules also run on it (test_tools.py, test_as_of.py, test_restore.py, test_import_conflicts.py)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp import doctor
from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.core.transfer import export
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import ConfigurationError, StoreUnavailable
from milvus_memory_mcp.filters import parse
from milvus_memory_mcp.history import make_history
from milvus_memory_mcp.history.postgres import PostgresHistory
from milvus_memory_mcp.history.postgres.filters import to_pg
from milvus_memory_mcp.history.postgres.migrations import apply_migrations
from milvus_memory_mcp.records import Change, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import ToolFailed, call, error_of, make_settings
from ..support.milvus_server import free_port
from ..support.postgres_server import PostgresServer
from .test_as_of import moment
from .test_filters import HOSTILE, ROWS, random_filter

pytestmark = pytest.mark.anyio

CASES: list[dict[str, Any]] = [
    {"category": "hobbies"},
    {"priority": {"gte": 3}},
    {"priority": {"ne": 3}},
    {"priority": {"nin": [3, 7]}},
    {"NOT": {"priority": {"gt": 2}}},
    {"priority": True},
    {"done": {"eq": 1}},
    {"done": False},
    {"tags": {"contains": "sport"}},
    {"tags": {"contains": 2}},
    {"tags": {"contains": True}},
    {"note": {"contains": "ünï"}},
    {"note": {"contains": "\\"}},
    {"category": HOSTILE},
    {"tags": {"contains": HOSTILE}},
    {"OR": [{"category": "task"}, {"NOT": {"tags": {"contains": "weekend"}}}]},
    {"agent_id": {"in": ["planner", "coder"]}, "priority": {"lt": 4}},
    {"agent_id": {"ne": "planner"}},
    {"agent_id": {"contains": "plan"}},
    {"agent_id": {"gt": "c"}},
    {"category": {"gt": "m"}},
    {"category": {"lt": "ü"}},
    {"category": {"lt": "Z"}},
    {"agent_id": {"lt": "Z"}},
    {"priority": {"gt": -(2**63), "lt": 2**63 - 1}},
    {"priority": {"lt": 1e300}},
    {"priority": 3.0},
    {"priority": "3"},
    {"created_at": {"gte": "2000-01-01T00:00:00Z"}},
    {"updated_at": {"lt": "2000-01-01"}},
    {"user_id": "v"},
    {"NOT": {"category": {"gte": "Z"}}},
]


async def test_the_postgres_renderer_selects_what_the_sqlite_one_selects(
    tmp_path: Path, local_embedder: LocalEmbedder, postgres_server: PostgresServer
) -> None:
    # A language collation ("Z" < "a" is false), so string order must come from COLLATE "C" as in SQLite.
    url = postgres_server.new_database(icu_locale="en-US")
    on_sqlite = make_settings(tmp_path / "sqlite")
    on_postgres = make_settings(tmp_path / "postgres", history_url=url)
    async with (
        MemoryService(on_sqlite, embedder=local_embedder) as sqlite_service,
        MemoryService(on_postgres, embedder=local_embedder) as pg_service,
    ):
        for service in (sqlite_service, pg_service):
            for text, meta, agent in ROWS:
                await service.add(text, Scope(user_id="u", agent_id=agent), meta, infer=False)
            await service.add("someone else's", Scope(user_id="v"), {"category": "hobbies"}, infer=False)
        rng = random.Random(20)
        cases = CASES + [random_filter(rng) for _ in range(150)]
        nonempty = 0
        for flt in cases:
            listed = []
            for service in (sqlite_service, pg_service):
                page = await service.list(Scope(user_id="u"), flt, limit=1000)
                listed.append([m.memory for m in page.results])  # the same order too
            assert listed[0] == listed[1], flt
            nonempty += bool(listed[0])
        assert nonempty > len(cases) // 3
        # the past reads render the same trees
        at = 2**62
        for flt in CASES[:8]:
            tree = parse(flt)
            states = [[r.memory for r in await s.history.list_at(tree, at, None)] for s in (sqlite_service, pg_service)]
            assert states[0] == states[1], flt


@pytest.fixture
def history(postgres_server: PostgresServer) -> str:
    """Every test here runs on a fresh PostgreSQL database."""
    return postgres_server.new_database()


async def test_the_tools_and_export_import_on_postgres(
    client: Client,
    service: MemoryService,
    tmp_path: Path,
    local_embedder: LocalEmbedder,
    postgres_server: PostgresServer,
) -> None:
    assert isinstance(service.history, PostgresHistory)
    tea = (await call(client, "add_memory", messages="Drinks oolong tea", user_id="a", metadata={"kind": "drink"}))[
        "results"
    ][0]
    await call(client, "add_memory", messages="Plays chess on Sundays", user_id="a", metadata={"kind": "hobby"})
    await call(client, "add_memory", messages="Lives in Lyon", user_id="b")
    hits = (await call(client, "search_memories", query="what tea", user_id="a"))["results"]
    assert hits[0]["id"] == tea["id"]
    listed = (await call(client, "list_memories", user_id="a", filters={"kind": {"in": ["hobby"]}}))["results"]
    assert [m["memory"] for m in listed] == ["Plays chess on Sundays"]
    before = await moment()
    await call(client, "update_memory", memory_id=tea["id"], data="Drinks green tea")
    old = (await call(client, "search_memories", query="tea", user_id="a", as_of=before))["results"]
    assert old[0]["memory"] == "Drinks oolong tea"
    await call(client, "restore_memory", memory_id=tea["id"])
    assert (await call(client, "get_memory", memory_id=tea["id"]))["memory"] == "Drinks oolong tea"
    await call(client, "delete_memory", memory_id=tea["id"])
    events = (await call(client, "memory_history", memory_id=tea["id"]))["events"]
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "RESTORE", "DELETE"]
    await call(client, "delete_all_memories", user_id="a", filters={"kind": "hobby"}, confirm=True)
    assert (await call(client, "list_memories", user_id="a"))["results"] == []
    assert len((await call(client, "list_memories", user_id="b"))["results"]) == 1
    stats = await service.stats()
    assert (stats["memories"], stats["events"]) == (1, 7) and "history" not in stats["store_bytes"]
    await service.flush()
    assert (await doctor.check(service)).clean

    out = io.StringIO()
    memories, events_n = await export(service.history, service.embedder, None, out, with_vectors=True)
    assert (memories, events_n) == (3, 7)
    lines = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    # into another PostgreSQL database: the same records, the same events
    settings = make_settings(tmp_path / "other", history_url=postgres_server.new_database())
    async with MemoryService(settings, embedder=local_embedder) as other:
        assert await other.import_batch(lines, "skip", service.embedder.model_id) == {
            "imported": 3,
            "skipped": 0,
            "refused": [],
        }
        again = io.StringIO()
        await export(other.history, other.embedder, None, again, with_vectors=True)
        assert again.getvalue().splitlines()[1:] == out.getvalue().splitlines()[1:]
        hits = (await other.search("where does b live", Scope(user_id="b"))).results
        assert hits[0].memory == "Lives in Lyon"


async def test_migrations_run_once_and_again_are_a_no_op(history: str) -> None:
    import asyncpg

    store = PostgresHistory(history, "memories")
    await store.open()
    await store.close()
    await store.open()  # a second open migrates nothing
    assert (await store.counts())["schema"] == "0001_schema"
    await store.close()
    conn = await asyncpg.connect(history)
    try:
        assert await apply_migrations(conn) == []  # pyright: ignore[reportArgumentType]
        assert await conn.fetchval("SELECT count(*) FROM migrations") == 1
    finally:
        await conn.close()


async def test_processes_starting_together_migrate_once(history: str) -> None:
    stores = [PostgresHistory(history, "memories") for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        assert [(await s.counts())["schema"] for s in stores] == ["0001_schema"] * 4
    finally:
        for store in stores:
            await store.close()


def test_filter_values_and_keys_reach_postgres_only_as_parameters() -> None:
    sql, params = to_pg(parse({"OR": [{"category": HOSTILE}, {"tags": {"contains": HOSTILE}}, {"n": {"gt": 2}}]}))
    assert HOSTILE not in sql and "category" not in sql and "tags" not in sql
    assert HOSTILE in params and "category" in params and Decimal(2) in params


async def test_marks_move_on_a_commit_by_another_process_and_a_failed_commit_writes_nothing(
    service: MemoryService,
) -> None:
    added = (await service.add("Drinks tea", Scope("alice"), infer=False)).results[0]
    model = service.embedder.model_id
    change, index = await service.history.change_mark(), await service.history.index_mark(model)
    other = make_history(service.settings)  # a second pool: another process's view
    await other.open()
    try:
        assert isinstance(other, PostgresHistory)
        await other.mark_pending([added.id])
        assert await service.history.change_mark() != change
        assert await service.history.index_mark(model) != index
        # a transaction that fails half-way leaves nothing behind: the record is not half-written
        record = await other.get(added.id)
        assert record is not None
        entries = await other.history(added.id)
        moved = Change(old=record, new=dataclasses.replace(record, memory="Drinks coffee"), history=entries[0])
        with pytest.raises(StoreUnavailable, match="history database at postgresql://postgres@127.0.0.1"):
            await other.commit([moved])  # the history row's id exists: the insert fails after the upsert
        assert (await service.get(added.id)).memory == "Drinks tea"
    finally:
        await other.close()


async def test_an_unreachable_or_bad_url_is_a_clear_error(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    url = f"postgresql://memory:s3cret@127.0.0.1:{free_port()}/memories"
    settings = make_settings(tmp_path / "data", history_url=url)
    async with MemoryService(settings, embedder=local_embedder) as service:
        async with Client(build_server(service)) as client:
            message = await error_of(client, "list_memories", user_id="u")
            assert "Could not connect to the history database at postgresql://memory:***@127.0.0.1" in message
            assert "s3cret" not in message and "MEMORY_HISTORY_URL" in message
            assert len((await client.list_tools()).tools) > 0  # the server lives on
    for bad in ("mysql://x/y", "postgresql://", "postgresql://h:99999/db"):
        with pytest.raises(ConfigurationError, match="MEMORY_HISTORY_URL"):
            Settings.load({"MEMORY_HISTORY_URL": bad})


async def test_a_password_in_the_query_string_is_masked_in_the_errors_agents_and_logs_read(
    tmp_path: Path, local_embedder: LocalEmbedder, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "TOPSECRET-q7Zx"
    caplog.set_level(logging.INFO)
    port = free_port()
    unreachable = f"postgresql://memory@127.0.0.1:{port}/memories?password={secret}&sslpassword={secret}-key"
    settings = make_settings(tmp_path / "a", history_url=unreachable)
    async with MemoryService(settings, embedder=local_embedder) as service:
        async with Client(build_server(service)) as client:
            message = await error_of(client, "list_memories", user_id="u")
    shown = f"postgresql://memory@127.0.0.1:{port}/memories?password=***&sslpassword=***"
    assert f"Could not connect to the history database at {shown}: " in message
    # A database that answers (trust authentication: the password is sent to no one), then fails a statement.
    url = f"{postgres_server.new_database()}?password={secret}"
    async with MemoryService(make_settings(tmp_path / "b", history_url=url), embedder=local_embedder) as service:
        async with Client(build_server(service)) as client:
            await call(client, "add_memory", messages="Has two cats", user_id="u")
            postgres_server.psql("DROP TABLE memories CASCADE", url.rsplit("/", 1)[1].split("?")[0])
            message = await error_of(client, "list_memories", user_id="u")
    assert f"The history database at {url.replace(secret, '***')} failed: " in message
    assert secret not in message and secret not in caplog.text


async def test_a_url_with_several_hosts_reaches_the_first_that_answers(
    tmp_path: Path, local_embedder: LocalEmbedder, postgres_server: PostgresServer
) -> None:
    database = postgres_server.new_database().rsplit("/", 1)[1]
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()},127.0.0.1:{postgres_server.port}/{database}"
    settings = Settings.load({"MEMORY_DATA_DIR": str(tmp_path), "MEMORY_HISTORY_URL": url})  # as asyncpg reads it
    async with MemoryService(settings, embedder=local_embedder) as service:
        async with Client(build_server(service)) as client:
            await call(client, "add_memory", messages="Has two cats", user_id="u")
            listed = (await call(client, "list_memories", user_id="u"))["results"]
    assert [m["memory"] for m in listed] == ["Has two cats"]


async def test_a_dropped_connection_fails_one_call_clearly_and_the_next_reconnects(
    client: Client, history: str, postgres_server: PostgresServer
) -> None:
    await call(client, "add_memory", messages="Has two cats", user_id="u")
    database = history.rsplit("/", 1)[1]
    # The server ends every connection to the database (an admin, a failover, a restart).
    postgres_server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(len((await call(client, "list_memories", user_id="u"))["results"]))
        except ToolFailed as e:
            assert "history database at postgresql://postgres@127.0.0.1" in str(e), e
            outcomes.append("failed")
    assert outcomes[-1] == 1  # the pool replaced the dead connection


async def test_without_the_driver_the_error_says_what_to_install(history: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what `import asyncpg` meets when it is not installed
    with pytest.raises(StoreUnavailable, match=r"pip install 'milvus-memory-mcp\[postgres\]'"):
        await PostgresHistory(history, "memories").open()


async def test_ids_page_in_code_point_order_whatever_the_database_collation(postgres_server: PostgresServer) -> None:
    store = PostgresHistory(postgres_server.new_database(icu_locale="en-US"), "memories")
    await store.open()
    try:
        ids = ["a-b", "ab", "a_c", "B", "a"]

        async def run(conn: Any) -> list[str]:
            await conn.executemany(
                "INSERT INTO memories (collection, id, memory, hash, created_at, updated_at) VALUES (?, ?, ?, ?, 1, 1)",
                [("memories", i, i, i) for i in ids],
            )
            return []

        await store._transaction(run)  # pyright: ignore[reportPrivateUsage, reportArgumentType]
        listed = [r.id for r in await store.list_live(None, None)]
        assert listed == sorted(ids)  # Python's order is code-point order, SQLite's too
        assert [r.id for r in await store.list_live(None, None, after=(1, "a-b"))] == sorted(ids)[3:]
    finally:
        await store.close()
