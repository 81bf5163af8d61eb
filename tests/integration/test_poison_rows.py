"""A row Milvus refuses (a "poison" row) never blocks other writes, a restart or `doctor`.

Validation refuses such values at the door (integers outside int64, lone surrogates); the tests of
the store layer put a poison row past it, as a record written before these checks would be: through
the write path with validation switched off, or straight into SQLite with its pending mark.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from milvus_memory_mcp import doctor
from milvus_memory_mcp import service as service_module
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import ANONYMOUS, Change, MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.indexed import IndexedStore
from milvus_memory_mcp.stores.milvus import MilvusStore

from ..conftest import call, error_of, make_settings
from ..support.processes import run_doctor

pytestmark = pytest.mark.anyio
POISON = {"n": 2**64}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"n": 2**64}, "metadata value at metadata.n is an integer outside the signed 64-bit range"),
        ({"n": 2**63}, "outside the signed 64-bit range"),
        ({"n": -(2**63) - 1}, "outside the signed 64-bit range"),
        ({"a": [1, {"b": 2**70}]}, "metadata value at metadata.a[1].b is an integer outside"),
    ],
)
async def test_metadata_no_store_can_keep_is_refused_with_a_clear_message(
    client: Client, metadata: dict[str, Any], expected: str
) -> None:
    message = await error_of(client, "add_memory", messages="Likes chess", user_id="u", metadata=metadata)
    assert expected in message, message
    kept = await call(client, "add_memory", messages="Likes chess", user_id="u", infer=False)
    [added] = kept["results"]
    message = await error_of(client, "update_memory", memory_id=added["id"], data="Likes go", metadata=metadata)
    assert expected in message, message
    listed = (await call(client, "list_memories", user_id="u"))["results"]
    assert [(m["memory"], m.get("metadata", {})) for m in listed] == [("Likes chess", {})]  # compact: no empty metadata


async def test_the_int64_bounds_themselves_are_stored(client: Client) -> None:
    bounds = {"low": -(2**63), "high": 2**63 - 1, "nested": [{"x": 2**63 - 1}]}
    [added] = (await call(client, "add_memory", messages="Bounds", user_id="u", metadata=bounds))["results"]
    assert (await call(client, "get_memory", memory_id=added["id"]))["metadata"] == bounds


async def test_lone_surrogates_are_refused(service: MemoryService) -> None:
    # JSON transports cannot carry them (the MCP client cannot even send them), but the core is
    # reached in process too (calls forwarded by another process).
    cases: list[tuple[Any, Scope, Any, str]] = [
        ("Likes \ud83d chess", Scope("u"), None, "memory text contains a lone UTF-16 surrogate"),
        ("Likes chess", Scope("u\udc00"), None, "user_id contains a lone UTF-16 surrogate"),
        ("Likes chess", Scope("u"), {"s": "a\ud800b"}, "metadata value at metadata.s contains a lone UTF-16"),
        ("Likes chess", Scope("u"), {"a": {"k\udc00": 1}}, "contains a NUL or a lone UTF-16 surrogate"),
    ]
    for text, scope, metadata, expected in cases:
        with pytest.raises(InvalidInput, match=expected):
            await service.add(text, scope, metadata)
    with pytest.raises(InvalidInput, match="lone UTF-16 surrogate"):
        await service.search("chess", Scope("u"), filters_={"k": "\ud800"})
    assert (await service.list(Scope("u"))).results == []


def no_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let metadata past the checks, as an older release did."""
    monkeypatch.setattr(service_module, "check_metadata", lambda m: dict(m or {}))


async def milvus_ids(svc: MemoryService) -> set[str]:
    store = svc.vectors.inner if isinstance(svc.vectors, IndexedStore) else svc.vectors
    assert isinstance(store, MilvusStore)
    return set(await store.ids())


async def test_a_refused_row_in_a_merged_batch_holds_back_no_other_write(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long flush delay: the three adds are queued and reach Milvus in one merged upsert.
    settings = make_settings(tmp_path / "data").model_copy(update={"flush_delay": 60.0})
    async with MemoryService(settings, embedder=local_embedder) as svc:
        alice = (await svc.add("Alice likes tea", Scope("alice"))).results[0].id
        no_validation(monkeypatch)
        poison = (await svc.add("Mallory's poison", Scope("mallory"), POISON)).results[0].id
        monkeypatch.undo()
        bob = (await svc.add("Bob likes coffee", Scope("bob"))).results[0].id
        await svc.flush()  # no error: the batch was split and the refused row skipped
        assert await milvus_ids(svc) == {alice, bob}
        assert await svc.history.pending_ids() == [poison]  # kept in SQLite, still pending
        assert "64-bit range" in svc.vectors.refused[poison]
        report = await doctor.check(svc)
        assert list(report.refused) == [poison] and not report.agree, report.lines()
        assert any("refused by the vector store" in line for line in report.lines())
        carol = (await svc.add("Carol likes juice", Scope("carol"))).results[0].id
        await svc.flush()
        assert await milvus_ids(svc) == {alice, bob, carol}

    # The restart re-applies the pending row, which Milvus refuses again: the start goes on.
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        dave = (await svc.add("Dave likes milk", Scope("dave"))).results[0].id
        await svc.flush()
        assert await milvus_ids(svc) == {alice, bob, carol, dave}
        assert await svc.history.pending_ids() == [poison]
        assert [h.memory for h in (await svc.search("tea", Scope("alice"))).results] == ["Alice likes tea"]

    checked = run_doctor(settings.data_dir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 refused by the vector store" in checked.stdout and poison in checked.stdout, checked.stdout
    assert "64-bit range" in checked.stdout and "The stores disagree." in checked.stdout
    repaired = run_doctor(settings.data_dir, "--repair")
    assert repaired.returncode == 1 and poison in repaired.stdout, repaired.stdout + repaired.stderr

    # The poisoner's own delete works, and then the stores agree.
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.delete(poison)
        await svc.flush()
        assert await svc.history.pending_ids() == []
        assert (await doctor.check(svc)).clean


def poison_change(text: str, user: str, metadata: dict[str, Any]) -> Change:
    record = MemoryRecord.new(text, metadata, Scope(user))
    return Change.of("ADD", None, record, ANONYMOUS.actor)


@pytest.mark.parametrize("search_index", [True, False], ids=["indexed", "milvus-only"])
async def test_a_pending_row_milvus_refuses_does_not_block_start_up(
    tmp_path: Path, local_embedder: LocalEmbedder, search_index: bool
) -> None:
    settings: Settings = make_settings(tmp_path / "data", search_index=search_index)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
    # As an older release left them: acknowledged, recorded in SQLite with their marks, not in Milvus.
    changes = [
        poison_change("Alice likes tea", "alice", {}),
        poison_change("Mallory's poison", "mallory", {"deep": [{"n": -(2**64)}]}),
        poison_change("Bob likes coffee", "bob", {"k": 1}),
    ]
    alice, poison, bob = (c.new.id for c in changes)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.history.open()
        await svc.history.commit(changes)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()  # refused before: DataNotMatchException ... Integer exceeds 64-bit range
        assert svc.is_ready
        assert await milvus_ids(svc) == {alice, bob}
        assert await svc.history.pending_ids() == [poison]
        added = (await svc.add("Erin likes cocoa", Scope("erin"))).results[0].id
        await svc.flush()
        assert await milvus_ids(svc) == {alice, bob, added}
        report = await doctor.check(svc)
        assert list(report.refused) == [poison] and not report.agree, report.lines()
        await svc.update(poison, "Mallory's fixed memory", {"n": 1})  # a valid write of the id clears it
        await svc.flush()
        assert not svc.vectors.refused and await svc.history.pending_ids() == []
        assert (await doctor.check(svc)).clean


async def test_a_new_refused_write_without_the_index_is_kept_pending(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", search_index=False)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        no_validation(monkeypatch)
        poison = (await svc.add("Mallory's poison", Scope("mallory"), {"x": [2**65]})).results[0].id
        monkeypatch.undo()
        other = (await svc.add("Alice likes tea", Scope(str(uuid.uuid4())))).results[0].id
        await svc.flush()
        assert await milvus_ids(svc) == {other}
        assert await svc.history.pending_ids() == [poison]
        assert list((await doctor.check(svc)).refused) == [poison]


@pytest.mark.parametrize("search_index", [True, False], ids=["indexed", "milvus-only"])
async def test_a_pending_text_longer_than_milvus_keeps_does_not_block_other_writes(
    tmp_path: Path, local_embedder: LocalEmbedder, search_index: bool
) -> None:
    # The engine itself refuses it (a MilvusException: "... exceeds max_length=65535"), not pymilvus.
    settings: Settings = make_settings(tmp_path / "data", search_index=search_index)
    changes = [poison_change("x" * 70_000, "mallory", {}), poison_change("Alice likes tea", "alice", {})]
    poison, alice = (c.new.id for c in changes)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.history.open()
        await svc.history.commit(changes)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        added = (await svc.add("Bob likes coffee", Scope("bob"))).results[0].id
        await svc.flush()
        assert await milvus_ids(svc) == {alice, added}
        assert await svc.history.pending_ids() == [poison]
        assert "exceeds max_length" in svc.vectors.refused[poison]
        assert list((await doctor.check(svc)).refused) == [poison]
