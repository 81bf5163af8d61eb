"""A collection that disappears under a running store: after another replica's `reembed` switched
(and dropped the old collection), or dropped outside. Reads say what to do, as writes do, instead of
Milvus's "collection not found". Two services on one PostgreSQL 15 history and one Milvus 2.3.5
collection stand for two replicas; the embedder is the fake OpenAI-compatible server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.errors import ConfigurationError, StoreUnavailable
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import drop_collection, server_settings
from ..support.fake_openai import FakeOpenAI
from ..support.milvus_server import MilvusStandalone
from ..support.postgres_server import PostgresServer

pytestmark = pytest.mark.anyio
OLD = {"embedder": "openai:model-a", "embedding_dims": 32}
NEW = {"embedder": "openai:model-b", "embedding_dims": 32}
ALICE = Scope("alice")


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    return openai_api


async def test_a_replica_left_behind_by_another_replicas_reembed_is_told_to_restart_on_reads_as_on_writes(
    milvus_server: MilvusStandalone,
    postgres_server: PostgresServer,
    tmp_path: Path,
    fake: FakeOpenAI,
    request: pytest.FixtureRequest,
) -> None:
    url = postgres_server.new_database()
    collection = server_settings(milvus_server, tmp_path).collection

    def replica(name: str, **embedder: object) -> Settings:
        return server_settings(milvus_server, tmp_path / name, collection=collection, history_url=url, **embedder)

    request.addfinalizer(lambda: drop_collection(milvus_server, collection))
    request.addfinalizer(lambda: drop_collection(milvus_server, f"{collection}_1"))
    restart = f"Restart this server with MEMORY_EMBEDDER={NEW['embedder']}."
    async with MemoryService(replica("a", **OLD)) as a, MemoryService(replica("b", **OLD)) as b:
        added = (await a.add("Plays tennis on Sundays", ALICE, infer=False)).results[0].id
        assert (await b.search("tennis", ALICE)).results[0].id == added
        while not (await a.reembed_step(NEW["embedder"], 32, 100))["switched"]:
            pass
        for _ in range(2):  # every search, not the first only
            with pytest.raises(ConfigurationError) as read:
                await b.search("tennis", ALICE)
            assert str(read.value) == (
                f"Another server process switched this memory store to the embedder {NEW['embedder']!r} "
                f"(reembed). {restart}"
            )
        with pytest.raises(ConfigurationError, match=f"nothing was changed. {restart}"):
            await b.add("Drinks tea", ALICE, infer=False)
        assert (await a.search("tennis", ALICE)).results[0].id == added
    async with MemoryService(replica("b", **NEW)) as b:  # restarted as told
        assert (await b.search("tennis", ALICE)).results[0].id == added


async def test_a_collection_dropped_under_a_running_store_is_made_again_at_restart_and_refilled_by_doctor(
    milvus_server: MilvusStandalone,
    tmp_path: Path,
    fake: FakeOpenAI,
    request: pytest.FixtureRequest,
) -> None:
    settings = server_settings(milvus_server, tmp_path, **OLD)
    request.addfinalizer(lambda: drop_collection(milvus_server, settings.collection))
    async with MemoryService(settings) as svc:
        added = (await svc.add("Plays tennis on Sundays", ALICE, infer=False)).results[0].id
        drop_collection(milvus_server, settings.collection)
        with pytest.raises(StoreUnavailable, match="no longer exists .*Restart this server.*doctor --repair"):
            await svc.search("tennis", ALICE)
    async with MemoryService(settings) as svc:  # the same store: made again, empty
        assert (await svc.search("tennis", ALICE)).results == []
    assert await doctor.run(settings, fix=True, out=io.StringIO()) == 0
    async with MemoryService(settings) as svc:
        assert (await svc.search("tennis", ALICE)).results[0].id == added
