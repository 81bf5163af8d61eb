"""The cluster-wide write lock on a real PostgreSQL (history/postgres/lock.py): two holders of one
collection serialise, other collections do not wait, a holder killed with SIGKILL frees it at once,
and a lock connection lost while held fails the write cleanly (nothing committed) and is replaced.
Under it, a replica left on the old embedder by another replica's `reembed` refuses to write, and
replicas starting together on a new Milvus collection create it once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp.errors import ConfigurationError, StoreUnavailable
from milvus_memory_mcp.history.postgres import PostgresHistory
from milvus_memory_mcp.records import Change, MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import drop_collection, server_settings
from ..support.fake_openai import FakeOpenAI
from ..support.fakes import HashEmbedder
from ..support.milvus_server import MilvusStandalone
from ..support.postgres_server import PostgresServer

pytestmark = pytest.mark.anyio

HOLDER = """
import asyncio, sys
from milvus_memory_mcp.history.postgres import PostgresHistory

async def main():
    history = PostgresHistory(sys.argv[1], "c")
    await history.open()
    async with history.write_lock():
        print("held", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


async def _entered(history: PostgresHistory, within: float) -> bool:
    """Whether `history` gets the write lock within `within` seconds (released at once)."""
    with anyio.move_on_after(within):
        async with history.write_lock():
            return True
    return False


async def test_two_holders_serialise_and_other_collections_do_not_wait(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    a, b, other = PostgresHistory(url, "c"), PostgresHistory(url, "c"), PostgresHistory(url, "d")
    for h in (a, b, other):
        await h.open()
    try:
        order: list[str] = []
        a_in = anyio.Event()

        async def hold(h: PostgresHistory, name: str) -> None:
            async with h.write_lock():
                order.append(f"{name} in")
                if name == "a":
                    a_in.set()
                    await anyio.sleep(1.0)  # long enough for b to queue and `other` to get in, even under load
                order.append(f"{name} out")

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, a, "a")
            await a_in.wait()
            tg.start_soon(hold, b, "b")
            assert await _entered(other, 0.8)  # another collection's lock is another lock
            assert order == ["a in"]  # b waits while a holds it
        assert order == ["a in", "a out", "b in", "b out"]
        assert await _entered(a, 1) and await _entered(b, 1)  # released, and reusable
    finally:
        for h in (a, b, other):
            await h.close()


async def test_a_holder_killed_with_sigkill_frees_the_lock(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    waiting = PostgresHistory(url, "c")
    await waiting.open()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        assert not await _entered(waiting, 0.5)
        holder.kill()
        holder.wait()
        start = time.monotonic()
        assert await _entered(waiting, 5)
        assert time.monotonic() - start < 2
    finally:
        holder.kill()
        holder.wait()
        await waiting.close()


async def test_a_lock_connection_lost_fails_the_commit_while_held_and_is_replaced(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    history = PostgresHistory(url, "c")
    await history.open()
    try:
        record = MemoryRecord.new("Likes tea", {}, Scope(user_id="u"))
        with pytest.raises(StoreUnavailable, match="history database"):
            async with history.write_lock():
                database = url.rsplit("/", 1)[1]
                postgres_server.psql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'milvus-memory-mcp lock'",
                    database,
                )
                await history.commit([Change.of("ADD", None, record, "t", [0.1, 0.2])], "m")
        assert await history.get(record.id) is None  # nothing half-written
        assert await history.pending_ids() == []
        async with history.write_lock():  # a new lock connection
            pass
        postgres_server.psql(  # lost while idle: replaced by the next write
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'milvus-memory-mcp lock'",
            database,
        )
        async with history.write_lock():
            await history.commit([Change.of("ADD", None, record, "t", [0.1, 0.2])], "m")
        assert (await history.get(record.id)) is not None
        assert await history.pending_ids() == [record.id]
    finally:
        await history.close()


async def test_a_replica_left_on_the_old_embedder_by_a_reembed_elsewhere_refuses_to_write(
    tmp_path: Path, postgres_server: PostgresServer, milvus_server: MilvusStandalone, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.new_database()
    first = server_settings(milvus_server, tmp_path / "a", history_url=url)
    second = first.model_copy(update={"data_dir": tmp_path / "b"})
    alice = Scope("alice")
    with FakeOpenAI(dims=32).running() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        try:
            async with (
                MemoryService(first, embedder=HashEmbedder()) as a,
                MemoryService(second, embedder=HashEmbedder()) as b,
            ):
                kept = (await b.add("Plays the cello", alice, infer=False)).results[0].id
                await a.add("Likes green tea", alice, infer=False)
                while not (await a.reembed_step("openai:model-b", 32, 10))["switched"]:
                    pass
                with pytest.raises(ConfigurationError, match="MEMORY_EMBEDDER=openai:model-b"):
                    await b.add("Reads science fiction", alice, infer=False)
                with pytest.raises(ConfigurationError, match="switched this memory store"):
                    await b.delete(kept)
                assert len((await a.list(alice)).results) == 2  # nothing changed
                assert (await a.add("Reads science fiction", alice, infer=False)).results[0].event == "ADD"
        finally:
            drop_collection(milvus_server, f"{first.collection}_1")
            drop_collection(milvus_server, first.collection)


async def test_replicas_opening_a_new_collection_together_create_it_once(
    tmp_path: Path, postgres_server: PostgresServer, milvus_server: MilvusStandalone
) -> None:
    # Unserialised, Milvus 2.3.5 refused the second creator's index ("can't change the index for
    # loaded collection") in 4 runs of 5.
    first = server_settings(milvus_server, tmp_path / "a", history_url=postgres_server.new_database())
    settings = [first.model_copy(update={"data_dir": tmp_path / name}) for name in "abc"]
    try:
        async with (
            MemoryService(settings[0], embedder=HashEmbedder()) as a,
            MemoryService(settings[1], embedder=HashEmbedder()) as b,
            MemoryService(settings[2], embedder=HashEmbedder()) as c,
        ):
            async with anyio.create_task_group() as tg:
                for service in (a, b, c):
                    tg.start_soon(service.ready)
            added = (await a.add("Plays the cello", Scope("u"), infer=False)).results[0].id
            with anyio.fail_after(2):  # the other replica's search sees it (polled: consistency is not this test's)
                while [h.id for h in (await c.search("cello", Scope("u"))).results] != [added]:
                    await anyio.sleep(0.05)
    finally:
        drop_collection(milvus_server, first.collection)
