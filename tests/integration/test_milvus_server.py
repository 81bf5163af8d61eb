"""The Milvus server path: capabilities, tenancy, read-your-write, restarts and connection errors,
against a real Milvus 2.3.5 standalone (and Milvus Lite where the partition-key path is forced)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp import filters
from milvus_memory_mcp.errors import BackendError, StoreUnavailable
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.milvus import PROP_TENANCY, Capabilities, MilvusStore

from ..conftest import drop_collection, make_settings, server_settings
from ..support.milvus_server import MilvusStandalone, free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("uri", "version", "expected"),
    [
        (
            "/data/milvus.db",
            "milvus_lite-3.2.2",
            dict(
                index_type="FLAT",
                flush_after_writes=True,
                bm25=True,
                inverted_index=True,
                filter_params=False,
                partition_key=False,
            ),
        ),
        (
            "http://h:19530",
            "v2.3.5-lite",
            dict(
                index_type="AUTOINDEX",
                flush_after_writes=False,
                bm25=False,
                inverted_index=False,
                filter_params=False,
                partition_key=False,
            ),
        ),
        ("http://h:19530", "v2.4.13", dict(bm25=False, inverted_index=True, filter_params=False, partition_key=True)),
        ("https://h:443", "v2.5.4", dict(bm25=True, inverted_index=True, filter_params=True, partition_key=True)),
        (
            "https://x.zillizcloud.com",
            "Zilliz Cloud Vector Database(Compatible with Milvus 2.5)",
            dict(bm25=True, filter_params=True, partition_key=True),
        ),
        ("https://h:443", "unknown", dict(bm25=True, filter_params=True, partition_key=True)),
    ],
)
def test_capabilities_follow_engine_and_version(uri: str, version: str, expected: dict[str, object]) -> None:
    caps = Capabilities.detect(uri, version)
    assert caps.consistency == "Strong"  # the collection's default, for reads by id
    assert caps.write_timestamps is not caps.lite  # a server's searches wait for the latest recorded write
    assert {k: getattr(caps, k) for k in expected} == expected


async def test_server_23_is_detected_at_connect_and_its_choices_recorded_with_the_collection(
    milvus_server: MilvusStandalone, tmp_path: Path
) -> None:
    settings = server_settings(milvus_server, tmp_path)
    store = MilvusStore(settings.resolved_milvus_uri, settings.collection, settings.milvus_token)
    assert store.capabilities.lite is False and store.capabilities.version is None  # no I/O before open()
    try:
        await store.open("m", 4)
        caps = store.capabilities
        assert caps.version == (2, 3, 5)
        assert (caps.index_type, caps.consistency, caps.flush_after_writes) == ("AUTOINDEX", "Strong", False)
        assert not (caps.inverted_index or caps.filter_params or caps.bm25 or caps.partition_key)
        assert store.tenancy == "scalar_index" and not store.needs_flush
        assert not store.ranks_by_stored_keywords  # no BM25 field: the start-up keyword check reads nothing
        described = await anyio.to_thread.run_sync(lambda: store._client.describe_collection(settings.collection))
        assert described["properties"][PROP_TENANCY] == "scalar_index"
        assert described["consistency_level_name"] == "Strong"
        indexed = await anyio.to_thread.run_sync(lambda: store._client.list_indexes(settings.collection))
        assert {"vector", "user_id", "agent_id", "run_id"} <= set(indexed)  # Trie scalar indexes on 2.3
    finally:
        await store.close()
        drop_collection(milvus_server, settings.collection)


async def test_partition_key_path_records_its_choice_and_keeps_users_apart(tmp_path: Path) -> None:
    # No test server has a working partition key (2.3 upserts ignore it), so force it on Lite.
    uri = str(tmp_path / "milvus.db")
    store = MilvusStore(uri, "memories", num_partitions=8, partition_key=True)
    try:
        await store.open("m", 4)
        assert store.tenancy == "partition_key"
        described = await anyio.to_thread.run_sync(lambda: store._client.describe_collection("memories"))
        assert described["properties"][PROP_TENANCY] == "partition_key"
        assert described["num_partitions"] >= 8
        assert any(f.get("is_partition_key") for f in described["fields"] if f["name"] == "user_id")
    finally:
        await store.close()
    reopened = MilvusStore(uri, "memories")  # the recorded choice wins over today's default
    try:
        await reopened.open("m", 4)
        assert reopened.tenancy == "partition_key"
    finally:
        await reopened.close()


async def test_partition_key_service_searches_only_the_callers_memories(tmp_path: Path, local_embedder) -> None:
    settings = make_settings(tmp_path)
    store = MilvusStore(settings.resolved_milvus_uri, settings.collection, num_partitions=4, partition_key=True)
    async with MemoryService(settings, embedder=local_embedder, vectors=store) as svc:
        for user in ("alice", "bob", "carol", "dave", "erin"):
            await svc.add(f"{user} plays the cello", Scope(user_id=user))
        hits = (await svc.search("who plays the cello", Scope(user_id="carol"))).results
        assert [h.memory for h in hits] == ["carol plays the cello"]


@pytest.fixture
async def served(milvus_server: MilvusStandalone, tmp_path: Path, local_embedder) -> AsyncIterator[MemoryService]:
    """A service on a fresh collection of the test server, dropped afterwards."""
    settings = server_settings(milvus_server, tmp_path)
    try:
        async with MemoryService(settings, embedder=local_embedder) as svc:
            yield svc
    finally:
        drop_collection(milvus_server, settings.collection)


async def test_search_right_after_add_sees_it_on_the_server(served: MemoryService) -> None:
    svc = served
    for i, topic in enumerate(["sailing", "chess", "pottery", "salsa dancing", "rock climbing"]):
        added = (await svc.add(f"Took up {topic} in week {i}", Scope(user_id="rw"))).results[0]
        hits = (await svc.search(f"Took up {topic}", Scope(user_id="rw"), limit=1)).results
        assert [h.id for h in hits] == [added.id], f"search missed the memory just added ({topic})"
    await svc.delete(added.id)
    hits = (await svc.search("rock climbing", Scope(user_id="rw"), limit=10)).results
    assert added.id not in [h.id for h in hits]


async def test_a_server_search_returns_the_best_of_a_wider_candidate_list_cut_to_the_limit(
    served: MemoryService, local_embedder
) -> None:
    svc = served
    topics = ["sailing", "chess", "pottery", "salsa", "climbing", "baking", "cycling", "poetry"]
    for user in ("wide", "other"):
        for topic in topics:
            await svc.add(f"{user} took up {topic}", Scope(user_id=user), infer=False)
    [vector] = await local_embedder.embed(["took up pottery"], kind="query")
    where = filters.scope_conditions(Scope(user_id="wide"))
    assert isinstance(svc.vectors, MilvusStore) and svc.vectors.capabilities.index_type != "FLAT"
    wide = await svc.vectors.search(vector, where, 100)
    assert len(wide) == len(topics) and all(r.user_id == "wide" for r, _ in wide)
    for limit in (1, 3):
        assert await svc.vectors.search(vector, where, limit) == wide[:limit]


async def test_server_restart_mid_session_fails_clearly_then_recovers(
    milvus_server: MilvusStandalone, tmp_path: Path, local_embedder
) -> None:
    settings = server_settings(milvus_server, tmp_path, milvus_timeout=2.0)
    scope = Scope(user_id="restart")
    try:
        async with MemoryService(settings, embedder=local_embedder) as svc:
            kept = (await svc.add("Keeps bees on the roof", scope)).results[0]
            milvus_server.stop()

            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as down:
                await svc.search("bees", scope)
            assert time.monotonic() - started < 10  # bounded: no multi-minute retry storm
            assert "unreachable" in str(down.value) and settings.resolved_milvus_uri in str(down.value)
            with pytest.raises(BackendError, match="unreachable"):
                await svc.add("Bought a second hive", scope)
            listed = (await svc.list(scope)).results  # nothing half-written: the failed add left no trace
            assert [m.memory for m in listed] == ["Keeps bees on the roof"]

            await anyio.to_thread.run_sync(milvus_server.start)
            hits = await _search_until_back(svc, scope)
            assert [h.id for h in hits] == [kept.id]
            again = (await svc.add("Bought a second hive", scope)).results[0]
            assert again.event == "ADD"
            hits = (await svc.search("second hive", scope, limit=1)).results
            assert [h.id for h in hits] == [again.id]
    finally:
        milvus_server.start()  # idempotent; later tests need it
        drop_collection(milvus_server, settings.collection)


async def _search_until_back(svc: MemoryService, scope: Scope, within: float = 90.0) -> list:
    deadline = time.monotonic() + within
    while True:
        try:
            return (await svc.search("bees", scope)).results
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.5)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong token", "refused the credentials"),
        ("no token", "refused the credentials"),
        ("tls to a plain server", "TLS handshake failed"),
        ("nothing listening", "unreachable"),
        ("unknown host", "could not be resolved"),
        ("unknown database", "does not exist"),
    ],
)
async def test_connection_problems_are_named_quickly(
    milvus_server: MilvusStandalone, tmp_path: Path, local_embedder, case: str, expected: str
) -> None:
    port = milvus_server.ports["proxy_port"]
    options = {
        "wrong token": dict(milvus_token="root:wrong"),
        "no token": dict(milvus_token=None),
        "tls to a plain server": dict(milvus_uri=f"https://127.0.0.1:{port}"),
        "nothing listening": dict(milvus_uri=f"http://127.0.0.1:{free_port()}"),
        "unknown host": dict(milvus_uri="http://no-such-host.invalid:19530"),
        "unknown database": dict(milvus_db_name="no_such_db"),
    }[case]
    settings = server_settings(milvus_server, tmp_path, milvus_timeout=3.0)
    settings = settings.model_copy(update=options)
    started = time.monotonic()
    async with MemoryService(settings, embedder=local_embedder) as svc:
        with pytest.raises(StoreUnavailable) as e:
            await svc.search("anything", Scope(user_id="u"))
    assert expected in str(e.value)
    assert time.monotonic() - started < 15


def test_database_name_is_refused_with_a_lite_file_and_accepted_with_a_server() -> None:
    from milvus_memory_mcp.errors import ConfigurationError
    from milvus_memory_mcp.settings import Settings

    with pytest.raises(ConfigurationError, match="MEMORY_MILVUS_DB_NAME applies to a Milvus server only"):
        Settings.load({"MEMORY_MILVUS_DB_NAME": "team"})
    s = Settings.load({"MEMORY_MILVUS_DB_NAME": "team", "MEMORY_MILVUS_URI": "https://db:19530"})
    assert (s.milvus_db_name, s.milvus_timeout, s.milvus_num_partitions) == ("team", 10.0, 16)
    with pytest.raises(ConfigurationError, match="MEMORY_MILVUS_NUM_PARTITIONS"):
        Settings.load({"MEMORY_MILVUS_NUM_PARTITIONS": "5000"})
