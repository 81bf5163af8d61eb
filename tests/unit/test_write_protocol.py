"""Fault injection at the adapter boundary for every write path: SQLite or the vector store failing at each step.

Each test runs twice: on real Milvus Lite with the real model, and on the in-package in-memory
store with a hashing embedder (`-k memory`: the write protocol alone, in seconds). SQLite is a
real file in both; the subclasses below only make one chosen call raise, as a failing disk or
server would. After each failure the call's outcome is stated
honestly and `doctor` finds the two stores in agreement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.core import writes as writes_module
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.errors import BackendError, MemoryServiceError, StoreUnavailable
from milvus_memory_mcp.history import SQLiteHistory
from milvus_memory_mcp.records import Change, MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.memory import InMemoryStore
from milvus_memory_mcp.stores.milvus import MilvusStore

from ..conftest import make_settings
from ..support.fakes import HashEmbedder

pytestmark = pytest.mark.anyio


class Crash(BaseException):
    """Stands for the process dying at this point: nothing after it runs, no handler catches it."""


class FaultyHistory(SQLiteHistory):
    """Real SQLite whose named write raises once (as a full or failing disk would)."""

    fail: set[str]

    def __init__(self, path: Path, collection: str) -> None:
        super().__init__(path, collection)
        self.fail = set()

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            self.fail.discard(name)
            raise StoreUnavailable(f"The history database failed: injected {name} fault.")

    async def commit(self, changes: list[Change], model: str | None = None) -> None:
        self._maybe_fail("commit")
        await super().commit(changes, model)

    async def revert(self, changes: list[Change]) -> None:
        self._maybe_fail("revert")
        await super().revert(changes)

    async def clear_pending(self, ids: list[str]) -> None:
        self._maybe_fail("clear_pending")
        await super().clear_pending(ids)


class Faults:
    """Makes the n-th write from now raise (or 'crash' the process), or be slow; or a flush fail."""

    fail_at: int | None = None  # 1 = the next write
    crash = False
    delay = 0.0
    fail_flush = False
    flush_delay = 0.0

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        await self._maybe_fail(bool(rows))
        await super().upsert(rows)  # type: ignore[misc]

    async def delete(self, ids: list[str]) -> None:
        await self._maybe_fail(bool(ids))
        await super().delete(ids)  # type: ignore[misc]

    async def flush(self) -> None:
        if self.fail_flush:
            self.fail_flush = False
            raise BackendError("The vector store failed to flush: injected fault.")
        await anyio.sleep(self.flush_delay)
        await super().flush()  # type: ignore[misc]

    async def _maybe_fail(self, writes: bool) -> None:
        if not writes:
            return
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail_at is None:
            return
        self.fail_at -= 1
        if self.fail_at == 0:
            self.fail_at = None
            if self.crash:
                raise Crash
            raise BackendError("The vector store failed to store the memory: injected fault.")


class FaultyMilvus(Faults, MilvusStore):
    """Real Milvus Lite with `Faults`."""


class FaultyMemory(Faults, InMemoryStore):
    """The in-package store (durable only after a flush, like Lite) with `Faults`: no Milvus, no model."""


class Backend:
    """Opens services on one data dir, as restarts of one process would: real SQLite each time, and
    either real Milvus Lite with the real model ("lite") or the in-memory store, whose rows outlive
    the service like a Milvus file, with a hashing embedder ("memory": a unit run in seconds)."""

    def __init__(self, kind: str, embedder: Embedder) -> None:
        self.kind = kind
        self.embedder = embedder
        self._rows: dict[str, tuple[MemoryRecord, list[float]]] = {}

    def open(self, settings: Settings) -> MemoryService:
        history = FaultyHistory(settings.resolved_history_path, settings.collection)
        vectors: Faults
        if self.kind == "lite":
            vectors = FaultyMilvus(settings.resolved_milvus_uri, settings.collection)
        else:
            vectors = FaultyMemory(history, rows=self._rows)
        return MemoryService(settings, embedder=self.embedder, vectors=vectors, history=history)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "lite"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", HashEmbedder())
    return Backend("lite", request.getfixturevalue("local_embedder"))


def faults(svc: MemoryService) -> tuple[FaultyHistory, Faults]:
    assert isinstance(svc.history, FaultyHistory) and isinstance(svc.vectors, Faults)
    return svc.history, svc.vectors


async def assert_agree(svc: MemoryService) -> None:
    report = await doctor.check(svc)
    assert report.clean, report.lines()


async def texts(svc: MemoryService, user: str = "u") -> list[str]:
    return [m.memory for m in (await svc.list(Scope(user))).results]


async def events(svc: MemoryService, memory_id: str) -> list[str]:
    return [e.event for e in (await svc.memory_history(memory_id)).events]


async def write(svc: MemoryService, operation: str, memory_id: str) -> Any:
    if operation == "add":
        return await svc.add("Collects stamps", Scope("u"))
    if operation == "update":
        return await svc.update(memory_id, "Keeps wasps")
    if operation == "delete":
        return await svc.delete(memory_id)
    return await svc.delete_all(Scope("u"), True)


OPERATIONS = ["add", "update", "delete", "delete_all"]


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_sqlite_commit_failure_returns_error_and_changes_nothing(
    tmp_path: Path, backend: Backend, operation: str
) -> None:
    async with backend.open(make_settings(tmp_path)) as svc:
        history, _ = faults(svc)
        kept = (await svc.add("Keeps bees", Scope("u"))).results[0]
        history.fail.add("commit")
        with pytest.raises(StoreUnavailable, match="injected commit fault.*Nothing was changed"):
            await write(svc, operation, kept.id)
        assert await texts(svc) == ["Keeps bees"]
        assert await events(svc, kept.id) == ["ADD"]
        await assert_agree(svc)


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_milvus_then_sqlite_revert_failure_reports_unconfirmed_and_completes_on_next_write(
    tmp_path: Path, backend: Backend, operation: str
) -> None:
    async with backend.open(make_settings(tmp_path)) as svc:
        history, vectors = faults(svc)
        kept = (await svc.add("Keeps bees", Scope("u"))).results[0]
        history.fail.add("revert")
        vectors.fail_at = 1
        with pytest.raises(BackendError, match="recorded but not confirmed"):
            await write(svc, operation, kept.id)
        assert not (await doctor.check(svc)).clean  # SQLite holds the change, Milvus not yet
        await svc.add("Another fact", Scope("other"))  # the next write completes it
        await assert_agree(svc)
    expected = {
        "add": ["Keeps bees", "Collects stamps"],
        "update": ["Keeps wasps"],
        "delete": [],
        "delete_all": [],
    }[operation]
    async with backend.open(make_settings(tmp_path)) as svc:
        assert await texts(svc) == expected
        assert len(await events(svc, kept.id)) == (1 if operation == "add" else 2)
        if expected:
            hits = (await svc.search(expected[-1], Scope("u"), limit=5)).results
            assert expected[-1] in [h.memory for h in hits]
        await assert_agree(svc)


async def test_unconfirmed_change_is_completed_at_the_next_start(tmp_path: Path, backend: Backend) -> None:
    settings = make_settings(tmp_path)
    async with backend.open(settings) as svc:
        history, vectors = faults(svc)
        kept = (await svc.add("Keeps bees", Scope("u"))).results[0]
        history.fail.add("revert")
        vectors.fail_at = 1
        with pytest.raises(BackendError, match="recorded but not confirmed"):
            await svc.update(kept.id, "Keeps wasps")
    async with backend.open(settings) as svc:
        hits = (await svc.search("wasps", Scope("u"))).results
        assert [h.memory for h in hits] == ["Keeps wasps"]
        await svc.ready()  # the search needed only SQLite and the search index; Milvus opens after it
        await assert_agree(svc)


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_failure_to_clear_the_pending_mark_keeps_the_success_and_is_settled_later(
    tmp_path: Path, backend: Backend, operation: str
) -> None:
    async with backend.open(make_settings(tmp_path)) as svc:
        history, _ = faults(svc)
        kept = (await svc.add("Keeps bees", Scope("u"))).results[0]
        await svc.flush()  # the add's own marks cleared now, so the injected failure meets the write's
        history.fail.add("clear_pending")
        await write(svc, operation, kept.id)  # both stores hold the change: the call succeeds
        await svc.flush()  # Lite: marks are cleared once the write is flushed; this clear fails
        assert await history.pending_ids() != []
        await svc.add("Another fact", Scope("other"))
        await svc.flush()
        assert await history.pending_ids() == []
        await assert_agree(svc)


async def test_milvus_failure_in_a_later_chunk_of_delete_all_restores_every_memory(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes_module, "APPLY_CHUNK", 2)
    async with backend.open(make_settings(tmp_path)) as svc:
        _, vectors = faults(svc)
        facts = [f"Fact number {i}" for i in range(5)]
        await svc.add([{"role": "user", "content": f} for f in facts], Scope("u"))
        vectors.fail_at = 2  # the first chunk of deletes reaches Milvus, the second fails
        with pytest.raises(BackendError, match="Nothing was changed"):
            await svc.delete_all(Scope("u"), True)
        assert await texts(svc) == facts
        assert len(await svc.vectors.ids()) == 5
        await assert_agree(svc)


async def test_crash_between_chunks_of_delete_all_completes_all_of_it_at_restart(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes_module, "APPLY_CHUNK", 2)
    settings = make_settings(tmp_path)
    with pytest.raises(Crash):
        async with backend.open(settings) as svc:
            _, vectors = faults(svc)
            await svc.add([{"role": "user", "content": f"Fact number {i}"} for i in range(5)], Scope("u"))
            await svc.add("Someone else's fact", Scope("v"))
            vectors.fail_at, vectors.crash = 2, True
            await svc.delete_all(Scope("u"), True)
    async with backend.open(settings) as svc:
        assert await texts(svc) == []
        assert await texts(svc, "v") == ["Someone else's fact"]
        await svc.ready()  # reads opened only SQLite and the search index
        assert len(await svc.vectors.ids()) == 1
        await assert_agree(svc)


async def test_cancelled_call_after_the_sqlite_commit_still_completes_in_both_stores(
    tmp_path: Path, backend: Backend
) -> None:
    async with backend.open(make_settings(tmp_path)) as svc:
        _, vectors = faults(svc)
        await svc.ready()
        vectors.delay = 0.5  # the Milvus write is in progress when the caller gives up
        with anyio.move_on_after(0.2):
            await svc.add("Has a red bicycle", Scope("u"))
        vectors.delay = 0.0
        assert await texts(svc) == ["Has a red bicycle"]
        await svc.flush()
        assert await svc.history.pending_ids() == []
        await assert_agree(svc)


async def test_failing_vector_store_at_start_up_is_reported_and_retried_on_the_next_call(
    tmp_path: Path, backend: Backend
) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(Crash):
        async with backend.open(settings) as svc:
            _, vectors = faults(svc)
            await svc.ready()
            vectors.fail_at, vectors.crash = 1, True
            await svc.add("Plays the cello", Scope("u"))
    async with backend.open(settings) as svc:
        _, vectors = faults(svc)
        vectors.fail_at = 1  # re-applying the pending mark fails once
        with pytest.raises(MemoryServiceError, match="injected fault"):
            await svc.list(Scope("u"))
        assert await texts(svc) == ["Plays the cello"]
        await assert_agree(svc)


async def test_failed_flush_keeps_the_pending_marks_and_the_next_write_reapplies_them(
    tmp_path: Path, backend: Backend
) -> None:
    async with backend.open(make_settings(tmp_path)) as svc:
        _, vectors = faults(svc)
        added = (await svc.add("Flushed later", Scope("u"))).results[0]
        vectors.fail_flush = True
        with pytest.raises(BackendError, match="flush"):
            await svc.flush()
        assert await svc.history.pending_ids() == [added.id]
        await svc.vectors.delete([added.id])  # what Milvus Lite 3.2.2 does to unflushed rows when a flush fails
        await svc.add("Next write", Scope("u"))
        await assert_agree(svc)
        assert [h.memory for h in (await svc.search("flushed", Scope("u"), limit=1)).results] == ["Flushed later"]


async def test_closing_during_a_background_flush_leaves_no_pending_marks(tmp_path: Path, backend: Backend) -> None:
    settings = make_settings(tmp_path)  # the background flush starts 0.05 s after a write
    async with backend.open(settings) as svc:
        history, vectors = faults(svc)
        await svc.add("Keeps bees", Scope("u"))
        vectors.flush_delay = 0.3
        await anyio.sleep(0.15)  # the background flush is under way when the service closes
    async with backend.open(settings) as svc:
        await svc.history.open()
        assert await svc.history.pending_ids() == []
