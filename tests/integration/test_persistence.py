"""Restarts, the embedder guard, and the write protocol between Milvus and SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.records import Change, HistoryEntry, MemoryRecord, Scope, now_us, text_hash
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.milvus import MilvusStore

from ..conftest import call, error_of, make_settings
from ..support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.anyio


async def test_memories_and_history_survive_a_restart_and_collection_is_loaded(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        added = (await call(client, "add_memory", messages="Speaks Portuguese", user_id="p"))["results"][0]
        await call(client, "update_memory", memory_id=added["id"], data="Speaks Portuguese and Spanish")
        gone = (await call(client, "add_memory", messages="Temporary fact", user_id="p"))["results"][0]
        await call(client, "delete_memory", memory_id=gone["id"])
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        hits = (await call(client, "search_memories", query="which languages", user_id="p"))["results"]
        assert [h["memory"] for h in hits] == ["Speaks Portuguese and Spanish"]
        history = (await call(client, "memory_history", memory_id=added["id"]))["events"]
        assert [e["event"] for e in history] == ["ADD", "UPDATE"]
        assert [e["event"] for e in (await call(client, "memory_history", memory_id=gone["id"]))["events"]] == [
            "ADD",
            "DELETE",
        ]
        assert (await call(client, "add_memory", messages="Speaks Portuguese and Spanish", user_id="p"))["results"][0][
            "event"
        ] == "NONE"


async def test_opening_a_collection_with_another_embedder_fails_naming_both(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    from milvus_memory_mcp.embedders.openai import OpenAIEmbedder

    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.add("made by MiniLM", Scope("u"))
    with FakeOpenAI(dims=64).running() as fake:
        other = OpenAIEmbedder("text-embedding-3-small", api_key="k", base_url=fake.base_url, dimensions=64)
        async with MemoryService(settings, embedder=other) as svc, Client(build_server(svc)) as client:
            message = await error_of(client, "search_memories", query="x", user_id="u")
    assert "local:all-MiniLM-L6-v2-int8" in message and "384" in message
    assert "openai:text-embedding-3-small" in message and "64" in message
    assert "MEMORY_EMBEDDER back" in message and "milvus-memory-mcp reembed --embedder NEW" in message


class FlakyMilvus(MilvusStore):
    """Real Milvus Lite whose next write raises, as a failing server would."""

    fail_next = False

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        self._maybe_fail()
        await super().upsert(rows)

    async def delete(self, ids: list[str]) -> None:
        self._maybe_fail()
        await super().delete(ids)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BackendError("The vector store failed to store the memory: injected fault.")


async def _stores_agree(svc: MemoryService) -> None:
    await svc.flush()  # on Lite, pending marks are cleared by the flush that made the writes durable
    assert sorted(await svc.history.live_ids()) == sorted(await svc.vectors.ids())
    assert await svc.history.pending_ids() == []


@pytest.mark.parametrize("operation", ["add", "update", "delete", "delete_all"])
async def test_milvus_failure_during_a_write_returns_error_and_stores_still_agree(
    tmp_path: Path, local_embedder: LocalEmbedder, operation: str
) -> None:
    settings = make_settings(tmp_path)
    store = FlakyMilvus(settings.resolved_milvus_uri, settings.collection)
    async with MemoryService(settings, embedder=local_embedder, vectors=store) as svc, Client(build_server(svc)) as c:
        kept = (await call(c, "add_memory", messages="Keeps bees", user_id="u"))["results"][0]
        store.fail_next = True
        if operation == "add":
            message = await error_of(c, "add_memory", messages="Collects stamps", user_id="u")
        elif operation == "update":
            message = await error_of(c, "update_memory", memory_id=kept["id"], data="Keeps wasps")
        elif operation == "delete":
            message = await error_of(c, "delete_memory", memory_id=kept["id"])
        else:
            message = await error_of(c, "delete_all_memories", user_id="u", confirm=True)
        assert "injected fault" in message and "Nothing was changed" in message
        item = await call(c, "get_memory", memory_id=kept["id"])
        assert item["memory"] == "Keeps bees"
        assert [e["event"] for e in (await call(c, "memory_history", memory_id=kept["id"]))["events"]] == ["ADD"]
        hits = (await call(c, "search_memories", query="bees", user_id="u"))["results"]
        assert [h["memory"] for h in hits] == ["Keeps bees"]
        await _stores_agree(svc)


async def test_change_recorded_in_sqlite_but_not_applied_is_reapplied_at_start(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        ts = now_us()
        record = MemoryRecord(
            str(uuid.uuid4()), "Crashed before Milvus", text_hash("Crashed before Milvus"), {}, "u", None, None, ts, ts
        )
        entry = HistoryEntry(str(uuid.uuid4()), record.id, None, record.memory, "ADD", ts, ts, "u", None, None)
        await svc.history.commit([Change(None, record, entry)])  # as if killed right after the SQLite commit
        assert await svc.vectors.ids() == []
    async with MemoryService(settings, embedder=local_embedder) as svc:
        result = await svc.search("crash", Scope("u"))
        assert [h.memory for h in result.results] == ["Crashed before Milvus"]
        await _stores_agree(svc)


async def test_history_written_before_none_events_existed_is_migrated_and_kept(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    import sqlite3

    from milvus_memory_mcp.history.migrations import MIGRATIONS

    settings = make_settings(tmp_path)
    path = settings.resolved_history_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)  # a database as the first release left it: only migration 0001
    name, sql = MIGRATIONS[0]
    conn.executescript(sql)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute("INSERT INTO migrations VALUES (?, datetime('now'))", (name,))
    conn.execute(
        "INSERT INTO history (id, collection, memory_id, old_memory, new_memory, event, created_at, updated_at) "
        "VALUES ('h1', 'memories', 'm1', NULL, 'old fact', 'ADD', 1, 1)"
    )
    conn.commit()
    conn.close()
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert [(h.id, h.event, h.new_memory) for h in await svc.history.history("m1")] == [("h1", "ADD", "old fact")]
        ts = now_us()
        await svc.history.note([HistoryEntry("h2", "m1", "old fact", "old fact", "NONE", 1, ts, "u", None, None)])
        assert [h.event for h in await svc.history.history("m1")] == ["ADD", "NONE"]
