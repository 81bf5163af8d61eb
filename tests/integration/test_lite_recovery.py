"""Milvus Lite after a kill between saving a flush and deleting its write-ahead log.

Lite 3.2.2 then replays log records whose sequence numbers are below the one it saved, and its
next flush fails ("current_seq is monotonic") on every open: the store could never open again
(seen once in the 20-SIGKILL crash test). The store takes the sequence past them at open.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from milvus_memory_mcp.records import MemoryRecord, Scope
from milvus_memory_mcp.stores.milvus import MilvusStore

pytestmark = pytest.mark.anyio


def record(text: str) -> tuple[MemoryRecord, list[float]]:
    return MemoryRecord.new(text, {}, Scope("u")), [1.0, 0.0, 0.0, 0.0]


async def test_a_log_already_flushed_but_left_behind_by_a_kill_does_not_stop_the_store_opening(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path / "milvus.db")
    wal = tmp_path / "milvus.db" / "collections" / "memories" / "wal"
    store = MilvusStore(uri, "memories")
    await store.open("test-model", 4)
    first = [record(f"Fact {i}") for i in range(3)]
    await store.upsert(first)
    left_behind = tmp_path / "left-behind"
    shutil.copytree(wal, left_behind)  # the log as a kill after the next flush's save would leave it
    await store.flush()
    last = record("A later fact")
    await store.upsert([last])
    await store.flush()
    await store.close()
    for path in left_behind.iterdir():
        shutil.copy(path, wal / path.name)

    reopened = MilvusStore(uri, "memories")
    await reopened.open("test-model", 4)
    try:
        assert sorted(await reopened.ids()) == sorted(r.id for r, _ in [*first, last])
        await reopened.upsert([record("Written after the recovery")])
        await reopened.flush()
        assert len(await reopened.ids()) == 5
    finally:
        await reopened.close()
