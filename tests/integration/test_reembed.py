"""`reembed` through the core, on real Milvus Lite and SQLite (the first test also on a Milvus server
and on PostgreSQL): the old collection serves and takes writes between steps, the switch catches them
up, and afterwards only the new embedder opens it.
The old embedder is the hashing test embedder, the new one an OpenAI-compatible API (the fake)."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_memory_mcp.errors import ConfigurationError, InvalidInput
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.identity import LOCATION_KEY, STORE_KEY
from tests.conftest import ENGINES_AND_HISTORIES, drop_collection, make_settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.fakes import HashEmbedder

pytestmark = pytest.mark.anyio
NEW = "openai:model-b"
ALICE = Scope("alice")
TOPICS = ["tennis", "piano", "Lisbon", "coffee", "hiking", "chess", "sushi", "Rust", "jazz", "gardening"]


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    return openai_api


async def seed(svc: MemoryService, n: int) -> list[str]:
    ids = []
    for i in range(n):
        result = await svc.add(f"Fact {i}: likes {TOPICS[i % 10]} and {TOPICS[(i * 3) % 10]}", ALICE, infer=False)
        ids.append(result.results[0].id)
    return ids


async def reembed_state(svc: MemoryService) -> dict[str, str]:
    """The history's store state without the store's identity (stores/identity.py)."""
    state = await svc.history.store_state()
    return {k: v for k, v in state.items() if k not in (STORE_KEY, LOCATION_KEY)}


async def run_to_the_end(svc: MemoryService, limit: int = 7) -> list[dict[str, object]]:
    steps = []
    while not steps or not steps[-1]["switched"]:
        steps.append(await svc.reembed_step(NEW, 32, limit))
        assert len(steps) < 100
    return steps


@ENGINES_AND_HISTORIES
async def test_reembed_switches_after_catching_up_with_writes_made_between_steps(
    settings: Settings, engine: str, request: pytest.FixtureRequest, fake: FakeOpenAI
) -> None:
    new_name = f"{settings.collection}_1"
    if engine == "server":  # the `settings` fixture drops the old collection (gone already) only
        server = request.getfixturevalue("milvus_server")
        request.addfinalizer(lambda: drop_collection(server, new_name))
    async with MemoryService(settings, embedder=HashEmbedder()) as svc:
        ids = await seed(svc, 30)
        first = await svc.reembed_step(NEW, 32, 10)
        assert (first["done"], first["total"], first["switched"]) == (10, 30, False)
        assert first["collection"] == new_name
        progress = {"collection": new_name, "model": NEW, "done": 10, "total": 30}
        assert (await svc.stats())["reembed_in_progress"] == progress
        # The old collection serves, and takes writes, between steps.
        assert (await svc.search("tennis", ALICE)).results
        await svc.update(ids[0], "Fact 0 (updated): plays squash on Sundays")  # already in the target
        await svc.delete(ids[1])  # already in the target
        added = (await svc.add("Fact 30: collects vinyl records", ALICE, infer=False)).results[0].id
        await svc.reembed_step(NEW, 32, 10)
        await svc.update(ids[2], "Fact 2 (updated): learns the cello")  # lands in the last step's catch-up
        steps = await run_to_the_end(svc)
        assert steps[-1] == {
            "done": 30,
            "total": 30,
            "switched": True,
            "collection": new_name,
            "model": NEW,
            "dimensions": 32,
        }
        assert svc.embedder.model_id == NEW and svc.embedder.dimensions == 32
        hits = (await svc.search("Fact 0 (updated): plays squash on Sundays", ALICE)).results
        assert hits[0].id == ids[0]
        assert (await svc.search("Fact 2 (updated): learns the cello", ALICE)).results[0].id == ids[2]
        assert (await svc.search("Fact 30: collects vinyl records", ALICE)).results[0].id == added
        assert ids[1] not in {h.id for h in (await svc.search("likes", ALICE, limit=100)).results}
        stored = set(await svc.vectors.ids())
        assert stored == set(await svc.history.live_ids()) and len(stored) == 30
        stats = await svc.stats()
        assert stats["collection"] == new_name and stats["reembed_in_progress"] is None
        # Writes after the switch use the new embedder and collection.
        later = (await svc.add("Fact 31: bakes sourdough bread", ALICE, infer=False)).results[0].id
        # A second run finds nothing to do.
        again = await svc.reembed_step(NEW, 32, 10)
        assert again["switched"] and again["total"] == 31
    new_settings = settings.model_copy(update={"embedder": NEW, "embedding_dims": 32})
    async with MemoryService(new_settings) as svc:
        assert (await svc.search("Fact 31: bakes sourdough bread", ALICE)).results[0].id == later
        assert (await svc.search("Fact 0 (updated): plays squash on Sundays", ALICE)).results[0].id == ids[0]
        assert await svc.stats()
    async with MemoryService(settings, embedder=HashEmbedder()) as svc:
        with pytest.raises(ConfigurationError, match="reembed --embedder NEW"):
            await svc.search("tennis", ALICE)
    if engine == "lite":  # only the new collection is left
        collections = (settings.data_dir / "milvus.db" / "collections").iterdir()
        assert sorted(p.name for p in collections) == [new_name]


async def test_a_second_reembed_moves_on_to_the_next_collection(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = make_settings(tmp_path / "data")
    async with MemoryService(settings, embedder=HashEmbedder()) as svc:
        ids = await seed(svc, 5)
        await run_to_the_end(svc)
        steps = []
        while not steps or not steps[-1]["switched"]:
            steps.append(await svc.reembed_step("openai:text-embedding-3-small", 16, 3))
        assert steps[-1]["collection"] == "memories_2" and svc.embedder.dimensions == 16
        assert (await svc.search("Fact 3", ALICE)).results[0].id == ids[3]


async def test_a_target_for_another_embedder_is_abandoned(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = make_settings(tmp_path / "data")
    async with MemoryService(settings, embedder=HashEmbedder()) as svc:
        await seed(svc, 12)
        assert not (await svc.reembed_step("openai:text-embedding-3-small", 16, 5))["switched"]
        # Asking for another embedder starts over (the half-built collection is dropped).
        first = await svc.reembed_step(NEW, 32, 5)
        assert (first["done"], first["collection"]) == (5, "memories_1")
        steps = await run_to_the_end(svc, 5)
        assert steps[-1]["switched"] and steps[-1]["model"] == NEW
        assert await reembed_state(svc) == {"active": "memories_1", "active_model": NEW}
    assert sorted(p.name for p in (settings.data_dir / "milvus.db" / "collections").iterdir()) == ["memories_1"]


@pytest.mark.parametrize(
    ("embedder", "dims", "limit", "message"),
    [
        ("", None, 10, "needs the new embedder"),
        ("openai:x", 0, 10, "--embedding-dims must be from 1"),
        ("openai:x", None, 0, "--batch must be from 1"),
        ("openai:x", None, "ten", "--batch must be from 1"),
    ],
)
async def test_bad_arguments_are_refused_and_change_nothing(
    tmp_path: Path, embedder: str, dims: object, limit: object, message: str
) -> None:
    async with MemoryService(make_settings(tmp_path / "data"), embedder=HashEmbedder()) as svc:
        with pytest.raises(InvalidInput, match=message):
            await svc.reembed_step(embedder, dims, limit)


async def test_an_unknown_embedder_is_refused(tmp_path: Path) -> None:
    async with MemoryService(make_settings(tmp_path / "data"), embedder=HashEmbedder()) as svc:
        await seed(svc, 2)
        with pytest.raises(ConfigurationError, match="Unknown embedder 'nope'"):
            await svc.reembed_step("nope", None, 10)
        assert (await svc.search("tennis", ALICE)).results
        assert await reembed_state(svc) == {}


async def test_a_collection_the_store_did_not_record_is_never_touched(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = make_settings(tmp_path / "data")
    other = settings.model_copy(update={"collection": "memories_1"})  # another store's, on the same engine
    async with MemoryService(other, embedder=HashEmbedder()) as svc:
        theirs = (await svc.add("Another store's memory about kayaks", ALICE, infer=False)).results[0].id
    async with MemoryService(settings, embedder=HashEmbedder()) as svc:
        await seed(svc, 4)
        steps = await run_to_the_end(svc)
        assert steps[-1]["collection"] == "memories_2"
    async with MemoryService(other, embedder=HashEmbedder()) as svc:
        assert (await svc.search("kayaks", ALICE)).results[0].id == theirs
