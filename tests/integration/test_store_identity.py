"""A Milvus collection belongs to one memory store (stores/identity.py): another store's collection,
its `reembed` target included, is refused before anything is read or written, and so is a replica
whose vectors are not the ones its shared history feeds. Real Milvus 2.3.5, Milvus Lite, SQLite and
PostgreSQL 15; the embedder is the fake OpenAI-compatible server (so that `doctor` builds the same)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.identity import LOCATION_KEY, PROP_MADE_FOR, PROP_STORE, STORE_KEY
from milvus_memory_mcp.stores.milvus import MilvusStore

from ..conftest import HISTORIES, drop_collection, make_settings, server_settings
from ..support.fake_openai import FakeOpenAI
from ..support.milvus_server import MilvusStandalone
from ..support.postgres_server import PostgresServer

pytestmark = pytest.mark.anyio
OLD = {"embedder": "openai:model-a", "embedding_dims": 32}
NEW = {"embedder": "openai:model-b", "embedding_dims": 32}
ALICE = Scope("alice")
FACTS = ["Plays tennis on Sundays", "Allergic to peanuts", "Salary is 93k EUR"]


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    return openai_api


def properties(server: MilvusStandalone, name: str) -> dict[str, str]:
    from pymilvus import MilvusClient

    client: Any = MilvusClient(uri=server.uri, token=server.token, timeout=10, dedicated=True)
    try:
        return dict(client.describe_collection(name).get("properties") or {})
    finally:
        client.close()


def on_server(server: MilvusStandalone, request: pytest.FixtureRequest, data_dir: Path, **extra: Any) -> Settings:
    settings = server_settings(server, data_dir, **extra)
    request.addfinalizer(lambda: drop_collection(server, settings.collection))
    return settings


async def seed(settings: Settings) -> list[str]:
    async with MemoryService(settings) as svc:
        return [(await svc.add(fact, ALICE, infer=False)).results[0].id for fact in FACTS]


async def refused_everywhere(settings: Settings, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Searches, adds and lists are refused, nothing is recorded, and `doctor --repair` refuses too."""
    async with MemoryService(settings) as svc:
        for call in (
            lambda: svc.search("salary", ALICE),
            lambda: svc.add("Second store: likes jazz", ALICE, infer=False),
            lambda: svc.list(ALICE),
        ):
            with pytest.raises(ConfigurationError, match=match):
                await call()
        assert STORE_KEY not in await svc.history.store_state()
    assert await doctor.run(settings, fix=True, out=io.StringIO()) == 2
    assert "nothing was read or written" in capsys.readouterr().err


async def held(settings: Settings, ids: list[str]) -> None:
    """The store still holds exactly its memories, and finds them."""
    async with MemoryService(settings) as svc:
        await svc.ready()
        assert sorted(await svc.vectors.ids()) == sorted(ids)
        assert (await svc.search("salary", ALICE)).results[0].memory == "Salary is 93k EUR"


@HISTORIES
async def test_a_store_named_like_another_stores_reembed_target_is_refused_and_doctor_leaves_it_alone(
    milvus_server: MilvusStandalone,
    tmp_path: Path,
    history: str | None,
    fake: FakeOpenAI,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = {"history_url": history} if history else {}
    first = on_server(milvus_server, request, tmp_path / "first", **OLD, **extra)
    target = f"{first.collection}_1"
    request.addfinalizer(lambda: drop_collection(milvus_server, target))
    ids = await seed(first)
    async with MemoryService(first) as svc:
        while not (await svc.reembed_step(NEW["embedder"], 32, 100))["switched"]:
            pass
        store_id = (await svc.history.store_state())[STORE_KEY]
    # The reembed target is the first store's, stamped as such; the first store serves from it.
    assert properties(milvus_server, target)[PROP_STORE] == store_id
    assert properties(milvus_server, target)[PROP_MADE_FOR] == first.collection
    first = first.model_copy(update=NEW)
    await held(first, ids)

    # Another store, on the same Milvus (and PostgreSQL database), whose MEMORY_COLLECTION is that name.
    second = server_settings(milvus_server, tmp_path / "second", collection=target, **NEW, **extra)
    await refused_everywhere(second, f"belongs to the memory store of MEMORY_COLLECTION='{first.collection}'", capsys)
    await held(first, ids)


@HISTORIES
async def test_a_second_history_on_the_same_collection_is_refused(
    milvus_server: MilvusStandalone,
    tmp_path: Path,
    history: str | None,
    fake: FakeOpenAI,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = {"history_url": history} if history else {}
    first = on_server(milvus_server, request, tmp_path / "first", **OLD, **extra)
    ids = await seed(first)
    # Another data dir (SQLite), or another PostgreSQL database, with the same MEMORY_COLLECTION.
    other = {"history_url": request.getfixturevalue("postgres_server").new_database()} if history else {}
    second = server_settings(milvus_server, tmp_path / "second", collection=first.collection, **OLD, **other)
    await refused_everywhere(second, "another memory store with the same MEMORY_COLLECTION and another history", capsys)
    await held(first, ids)


async def test_lite_replicas_on_one_postgresql_history_are_refused_a_single_process_is_not(
    postgres_server: PostgresServer, tmp_path: Path, fake: FakeOpenAI
) -> None:
    url = postgres_server.new_database()
    a = make_settings(tmp_path / "a", history_url=url, **OLD)
    b = make_settings(tmp_path / "b", history_url=url, **OLD)
    async with MemoryService(a) as one, MemoryService(b) as two:
        # Both serve searches from their search index before Milvus opens; the first to open it binds the history.
        assert (await one.search("penicillin", ALICE)).results == []
        assert (await two.search("penicillin", ALICE)).results == []
        await one.ready()
        with pytest.raises(ConfigurationError, match="Replicas on one history need one Milvus server") as e:
            await two.ready()
        assert "set MEMORY_MILVUS_URI" in str(e.value) and str(tmp_path / "a" / "milvus.db") in str(e.value)
        await one.add("Allergic to penicillin", ALICE, infer=False)
        for call in (
            lambda: two.search("penicillin allergy", ALICE),  # no longer served from its own index
            lambda: two.list(ALICE),
            lambda: two.add("Drinks tea", ALICE, infer=False),
        ):
            with pytest.raises(ConfigurationError, match="need one Milvus server"):
                await call()
    async with MemoryService(b) as two:  # a replica started later is refused before serving anything
        with pytest.raises(ConfigurationError, match="need one Milvus server"):
            await two.search("penicillin allergy", ALICE)
    async with MemoryService(a) as one:  # the one process on Lite with a PostgreSQL history keeps working
        assert (await one.search("penicillin allergy", ALICE)).results[0].memory == "Allergic to penicillin"
    # Its data dir moved (its Lite file carries the store's stamp): still this store, now recorded there.
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "a", moved)
    async with MemoryService(make_settings(moved, history_url=url, **OLD)) as one:
        assert (await one.search("penicillin allergy", ALICE)).results[0].memory == "Allergic to penicillin"
        assert str(moved / "milvus.db") in (await one.history.store_state())[LOCATION_KEY]


async def test_a_lite_process_on_a_history_that_feeds_a_milvus_server_is_refused(
    milvus_server: MilvusStandalone,
    postgres_server: PostgresServer,
    tmp_path: Path,
    fake: FakeOpenAI,
    request: pytest.FixtureRequest,
) -> None:
    served = on_server(milvus_server, request, tmp_path / "replica", history_url=postgres_server.new_database(), **OLD)
    ids = await seed(served)
    forgot_uri = make_settings(tmp_path / "forgot", history_url=served.history_url, collection=served.collection, **OLD)
    async with MemoryService(forgot_uri) as svc:
        with pytest.raises(ConfigurationError, match=f"feeds the Milvus server {milvus_server.uri}"):
            await svc.search("salary", ALICE)
    await held(served, ids)


async def test_a_collection_made_by_an_earlier_release_is_adopted_by_its_history(
    milvus_server: MilvusStandalone, tmp_path: Path, fake: FakeOpenAI, request: pytest.FixtureRequest
) -> None:
    settings = on_server(milvus_server, request, tmp_path / "data", **OLD)
    # An earlier release: the same store without the identity check (no stamp, no record).
    unstamped = MilvusStore(settings.resolved_milvus_uri, settings.collection, settings.milvus_token)
    async with MemoryService(settings, vectors=unstamped) as svc:
        ids = [(await svc.add(fact, ALICE, infer=False)).results[0].id for fact in FACTS]
    assert PROP_STORE not in properties(milvus_server, settings.collection)
    await held(settings, ids)  # opened by its own history: adopted
    async with MemoryService(settings) as svc:
        await svc.ready()
        store_id = (await svc.history.store_state())[STORE_KEY]
    assert properties(milvus_server, settings.collection)[PROP_STORE] == store_id
    second = settings.model_copy(update={"data_dir": tmp_path / "second"})
    async with MemoryService(second) as svc:
        with pytest.raises(ConfigurationError, match="another history"):
            await svc.search("salary", ALICE)


async def test_a_collection_of_an_earlier_release_holding_memories_is_refused_to_an_empty_history(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path / "first", **OLD)
    unstamped = MilvusStore(settings.resolved_milvus_uri, settings.collection)
    async with MemoryService(settings, vectors=unstamped) as svc:
        await svc.add("Salary is 93k EUR", ALICE, infer=False)
    lite_file = settings.resolved_milvus_uri
    async with MemoryService(make_settings(tmp_path / "second", milvus_uri=lite_file, **OLD)) as svc:
        with pytest.raises(ConfigurationError, match="holds memories that the history database .* does not have"):
            await svc.ready()
        with pytest.raises(ConfigurationError, match="holds memories"):  # nor served from its search index
            await svc.search("salary", ALICE)
    async with MemoryService(settings) as svc:  # its own history adopts it
        assert (await svc.search("salary", ALICE)).results[0].memory == "Salary is 93k EUR"


async def test_a_store_never_drops_another_stores_collection(
    milvus_server: MilvusStandalone, tmp_path: Path, fake: FakeOpenAI, request: pytest.FixtureRequest
) -> None:
    mine = on_server(milvus_server, request, tmp_path / "mine", **OLD)
    theirs = on_server(milvus_server, request, tmp_path / "theirs", collection=f"{mine.collection}_9", **OLD)
    ids = await seed(theirs)
    async with MemoryService(mine) as svc:
        await svc.ready()
        await svc.vectors.drop_collection(theirs.collection)  # as reembed drops a retired collection
        assert await svc.vectors.has_collection(theirs.collection)
    await held(theirs, ids)
