"""Milvus Lite behind the search index gives its collection's memory back when writes pause.

Lite 3.2.2 holds every data file of a collection in memory once a call names it (430 MB at 100k
memories). With `park` the store does not load the collection at open, drops it from Lite's memory
when the write protocol reports no flush for a while (`idle`, also after opening), reads it back before
the next flush (`prepare_flush`, outside the write lock) and loads it before a read that needs
Lite itself (doctor).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp.core import writes
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.indexed import IndexedStore
from milvus_memory_mcp.stores.milvus import MilvusStore

from ..conftest import make_settings

pytestmark = pytest.mark.anyio


def record(text: str, user: str = "u") -> tuple[MemoryRecord, list[float]]:
    return MemoryRecord.new(text, {}, Scope(user)), [1.0, 0.0, 0.0, 0.0]


def held(store: MilvusStore) -> bool:
    assert store._lite is not None
    return store._lite.holds("memories")


async def test_a_parked_collection_takes_writes_and_answers_reads_after_loading_again(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    store = MilvusStore(uri, "memories", park=True)
    await store.open("test-model", 4)
    assert held(store)  # read to check it, not loaded
    await store.idle()
    assert not held(store)
    first = [record(f"Fact {i}") for i in range(3)]
    await store.upsert(first)  # Lite reads the collection again to take the write
    await store.flush()
    assert held(store)  # kept for the next flush
    await store.idle()
    assert not held(store)
    assert {r.id for r in await store.get([r.id for r, _ in first])} == {r.id for r, _ in first}  # loaded first
    assert held(store)
    await store.idle()
    await store.delete([first[0][0].id])
    later = record("A later fact")
    await store.upsert([later])
    await store.flush()
    await store.idle()
    assert not held(store)
    assert sorted(await store.ids()) == sorted([first[1][0].id, first[2][0].id, later[0].id])
    await store.close()

    reopened = MilvusStore(uri, "memories")  # loaded as before: every write made while parked is there
    await reopened.open("test-model", 4)
    assert sorted(await reopened.ids()) == sorted([first[1][0].id, first[2][0].id, later[0].id])
    await reopened.close()


async def test_reads_racing_parking_all_succeed(tmp_path: Path) -> None:
    store = MilvusStore(str(tmp_path / "milvus.db"), "memories", park=True)
    await store.open("test-model", 4)
    written: list[str] = []
    seen: list[int] = []

    async def writer() -> None:
        for i in range(15):
            row = record(f"Fact {i}")
            await store.upsert([row])
            written.append(row[0].id)
            await store.flush()
            await store.idle()  # parks the collection

    async def reader() -> None:
        for _ in range(30):
            seen.append(len(await store.get(list(written))))
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(reader)
        tg.start_soon(reader)
    assert len(seen) == 60
    assert len(await store.get(written)) == 15
    await store.close()


async def test_the_service_gives_the_collection_back_once_writes_pause(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "IDLE_AFTER", 0.3)
    async with MemoryService(make_settings(tmp_path), embedder=local_embedder) as service:
        await service.ready()
        assert isinstance(service.vectors, IndexedStore) and isinstance(service.vectors.inner, MilvusStore)
        inner = service.vectors.inner
        with anyio.fail_after(10):
            while held(inner):  # opening asked for a flush, then `idle`
                await anyio.sleep(0.05)
        added = (await service.add("I play tennis on Sundays", Scope("alice"), infer=False)).results[0]
        with anyio.fail_after(10):
            while await service.history.pending_ids() or held(inner):  # flushed, then given back
                await anyio.sleep(0.05)
        assert [r.memory for r in (await service.search("tennis", Scope("alice"))).results] == [added.memory]
        assert not held(inner)  # searches are the index's


async def test_prepare_flush_reads_a_parked_collection_back_only_when_writes_are_queued(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path).model_copy(update={"flush_delay": 60})  # no flush but ours
    async with MemoryService(settings, embedder=local_embedder) as service:
        await service.ready()
        store = service.vectors
        assert isinstance(store, IndexedStore) and isinstance(store.inner, MilvusStore)
        await store.idle()
        await store.prepare_flush()
        assert not held(store.inner)  # nothing queued: nothing to read
        await service.add("I play tennis on Sundays", Scope("alice"), infer=False)  # queued behind the index
        await store.prepare_flush()  # what the flusher does before it takes the write lock
        assert held(store.inner)
        await service.flush()
        assert await service.history.pending_ids() == []
        await store.idle()
        assert not held(store.inner)
