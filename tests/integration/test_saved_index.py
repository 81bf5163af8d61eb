"""The search index saved at a clean close and loaded at the next start (server/index_file.py),
on real Milvus Lite + SQLite (and PostgreSQL): used only while the history is unchanged, rebuilt otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from milvus_memory_mcp import index_file
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.history import make_history
from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.search_index import Entry, SearchIndex
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import indexed
from milvus_memory_mcp.stores.indexed import IndexedStore

from ..conftest import HISTORIES, make_settings

pytestmark = pytest.mark.anyio

ALICE, BOB = Scope(user_id="alice"), Scope(user_id="bob")
TEXTS = ["Likes to play tennis on weekends", "Is allergic to peanuts", "Adopted a cat named Pixel", "Lives in Porto"]
QUERIES = ["tennis", "what is she allergic to", "pets", "where does she live"]


def saved_folder(settings: Settings) -> Path:
    path = settings.resolved_history_path
    return path.with_name(f"{path.name}.{settings.collection}.index")


async def results(svc: MemoryService) -> list[list[tuple[str, float]]]:
    return [[(h.memory, round(h.score, 5)) for h in (await svc.search(q, ALICE, limit=3)).results] for q in QUERIES]


async def stored(settings: Settings, embedder: LocalEmbedder) -> tuple[list[list[tuple[str, float]]], list[str]]:
    """TEXTS stored in ALICE's scope by a service closed cleanly: its search results and the ids."""
    async with MemoryService(settings, embedder=embedder) as svc:
        ids = [(await svc.add(t, ALICE, infer=False)).results[0].id for t in TEXTS]
        return await results(svc), ids


async def started(svc: MemoryService) -> bool:
    """Open the service; True when its index came from the saved files."""
    await svc.ready()
    assert isinstance(svc.vectors, IndexedStore)
    return not svc.vectors._unsaved  # pyright: ignore[reportPrivateUsage]


def test_an_index_restored_from_its_state_answers_and_changes_like_the_original() -> None:
    def entry(i: str, scope: Scope, vector: list[float], text: str) -> Entry:
        return Entry(i, scope, np.asarray(vector, dtype=np.float32), analyse(text))

    index = SearchIndex(2)
    index.upsert([entry("a", ALICE, [1, 0], "tennis on weekends"), entry("b", BOB, [0, 1], "chess club")])
    index.upsert([entry("c", ALICE, [0.6, 0.8], "tennis and chess")])
    index.delete(["b"])
    arrays, values = index.state()
    copy = SearchIndex.restore(arrays, values)
    for q in ([1, 0], [0, 1]):
        assert copy.search(q, ALICE, 5) == index.search(q, ALICE, 5)
    assert copy.search_words(analyse("tennis chess"), ALICE, 5) == index.search_words(analyse("tennis chess"), ALICE, 5)
    for each in (index, copy):  # the freed row is reused, then the matrix grows
        each.upsert(
            [entry("d", BOB, [0, 1], "chess"), entry("e", BOB, [1, 1], "more chess"), entry("f", ALICE, [0, 1], "x")]
        )
    assert copy.search([0, 1], BOB, 5) == index.search([0, 1], BOB, 5) and len(copy) == len(index) == 5
    assert copy.search_words("chess", BOB, 5) == index.search_words("chess", BOB, 5)


@HISTORIES
async def test_a_clean_restart_loads_the_saved_index_and_answers_the_same(
    tmp_path: Path, local_embedder: LocalEmbedder, history: str | None
) -> None:
    settings = make_settings(tmp_path / "data", history_url=history)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert not await started(svc)
        ids = [(await svc.add(t, ALICE, infer=False)).results[0].id for t in TEXTS]
        await svc.add("Plays tennis every day", BOB, infer=False)
        await svc.update(ids[0], "Stopped playing tennis, now rows on weekends")
        await svc.delete(ids[1])
        before = await results(svc)
    folder = saved_folder(settings)
    assert (folder / "vectors.npy").is_file() and folder.stat().st_mode & 0o077 == 0
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert await started(svc)
        assert await results(svc) == before
        await svc.add("Drinks oolong tea", ALICE, infer=False)  # grows the loaded index
        assert (await svc.search("tea", ALICE, limit=1)).results[0].memory == "Drinks oolong tea"
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert await started(svc)  # saved again at that close, with the write
        assert (await svc.search("tea", ALICE, limit=1)).results[0].memory == "Drinks oolong tea"


@HISTORIES
async def test_a_history_changed_since_the_save_rebuilds_the_index(
    tmp_path: Path, local_embedder: LocalEmbedder, history: str | None
) -> None:
    settings = make_settings(tmp_path / "data", history_url=history)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        for t in TEXTS:
            await svc.add(t, ALICE, infer=False)
    # a process that does not use the index writes meanwhile (its close saves nothing)
    async with MemoryService(settings.model_copy(update={"search_index": False}), embedder=local_embedder) as svc:
        await svc.add("Moved to Lisbon in May", ALICE, infer=False)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert not await started(svc)
        assert (await svc.search("Lisbon", ALICE, limit=1)).results[0].memory == "Moved to Lisbon in May"


async def test_an_index_saved_under_another_keyword_analysis_is_rebuilt(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The index holds each memory's analysed words: saved by a release that analysed them otherwise,
    # it would match by the old words until the next write.
    settings = make_settings(tmp_path / "data")
    before, _ = await stored(settings, local_embedder)
    monkeypatch.setattr(index_file, "ANALYSIS", index_file.ANALYSIS + 1)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert not await started(svc)
        assert await results(svc) == before
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert await started(svc)  # saved again under the current analysis


async def test_unreadable_saved_files_are_rebuilt_from_the_history(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    before, _ = await stored(settings, local_embedder)
    vectors = saved_folder(settings) / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:100])  # cut off, as by a full disk
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert not await started(svc)
        assert await results(svc) == before


async def test_a_large_rebuilt_index_is_saved_and_mapped_at_once_and_answers_the_same(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data")
    before, _ = await stored(settings, local_embedder)
    index_file.remove(saved_folder(settings))  # as after a crash: the next start rebuilds
    monkeypatch.setattr(indexed, "MAP_AFTER_REBUILD", len(TEXTS))
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert await started(svc)  # rebuilt, then saved and loaded back
        assert isinstance(svc.vectors, IndexedStore)
        assert isinstance(svc.vectors._index._vectors, np.memmap)  # pyright: ignore[reportPrivateUsage, reportOptionalMemberAccess]
        assert (saved_folder(settings) / "vectors.npy").is_file()
        assert await results(svc) == before
        await svc.add("Drinks oolong tea", ALICE, infer=False)  # a write after it changes the mapped copy only
        assert (await svc.search("tea", ALICE, limit=1)).results[0].memory == "Drinks oolong tea"
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert await started(svc)
        assert (await svc.search("tea", ALICE, limit=1)).results[0].memory == "Drinks oolong tea"


async def test_a_rebuilt_index_with_changes_pending_is_kept_as_built(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data")
    before, ids = await stored(settings, local_embedder)
    history = make_history(settings)  # as a crash mid-write: a change recorded, maybe not applied
    await history.open()
    await history.mark_pending(ids[:1])
    await history.close()
    index_file.remove(saved_folder(settings))
    monkeypatch.setattr(indexed, "MAP_AFTER_REBUILD", 1)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert not await started(svc)  # not saved: the index may not be the database's until re-applied
        assert await results(svc) == before
