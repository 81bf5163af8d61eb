"""`doctor` tells writes still pending (a stop right after a write) from real disagreement, and
refuses a data dir that holds no store instead of creating one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import ANONYMOUS, Change, MemoryRecord, Scope, now_us, text_hash
from milvus_memory_mcp.service import MemoryService

from ..conftest import make_settings
from ..support.processes import handshake, read_until, rpc, run_doctor, spawn_stdio

pytestmark = pytest.mark.anyio


def test_a_write_killed_within_the_flush_delay_is_a_pending_write_not_a_disagreement(tmp_path: Path) -> None:
    # The server acknowledges the add, then dies before its debounced Milvus write (30 s away).
    proc = spawn_stdio(tmp_path, MEMORY_FLUSH_DELAY="30")
    try:
        deadline = time.monotonic() + 90
        handshake(proc, deadline)
        add = {"name": "add_memory", "arguments": {"messages": "Runs marathons", "user_id": "u"}}
        rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": add})
        added = read_until(proc, 2, deadline)["result"]["structuredContent"]["results"][0]["id"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    checked = run_doctor(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 pending write(s), recorded in SQLite and not yet confirmed in the vector store" in checked.stdout
    assert added in checked.stdout and "missing from the vector store" not in checked.stdout, checked.stdout
    assert checked.stdout.strip().endswith("The stores agree, except for the pending writes above.")
    repaired = run_doctor(tmp_path, "--repair")
    assert repaired.returncode == 0 and repaired.stdout.strip().endswith("The stores agree."), repaired.stdout


async def test_pending_adds_updates_and_deletes_agree_but_an_unexplained_difference_does_not(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        kept = (await svc.add("Keeps bees", Scope("u"))).results[0].id
        gone = (await svc.add("Keeps wasps", Scope("u"))).results[0].id
        await svc.flush()
        records = await svc.history.get_many([kept, gone])
        # What a stop before the flush leaves: SQLite has the changes and their marks, Milvus not.
        new = MemoryRecord.new("Keeps ants", {}, Scope("u"))
        changed = records[kept].updated(memory="Keeps hornets", hash=text_hash("Keeps hornets"), updated_at=now_us())
        deleted = records[gone].updated(deleted_at=now_us())
        await svc.history.commit(
            [
                Change.of(event, old, rec, ANONYMOUS.actor)
                for old, rec, event in [
                    (None, new, "ADD"),
                    (records[kept], changed, "UPDATE"),
                    (records[gone], deleted, "DELETE"),
                ]
            ]
        )
    checked = run_doctor(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 pending write(s)" in checked.stdout and "differing" not in checked.stdout, checked.stdout

    async with MemoryService(settings, embedder=local_embedder) as svc:  # applies the pending writes
        await svc.ready()
        [vector] = await local_embedder.embed(["something else"])
        stale = (await svc.history.get_many([new.id]))[new.id].updated(user_id="someone-else")
        await svc.vectors.upsert([(stale, vector)])  # no pending mark explains this one
        await svc.vectors.flush()
    checked = run_doctor(tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"  {new.id}: user_id" in checked.stdout and "The stores disagree." in checked.stdout


@pytest.mark.parametrize("exists", [False, True], ids=["no-such-dir", "empty-dir"])
def test_doctor_on_a_data_dir_without_a_store_says_so_and_creates_nothing(tmp_path: Path, exists: bool) -> None:
    data_dir = tmp_path / "nowhere"
    if exists:
        data_dir.mkdir()
    checked = run_doctor(data_dir)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "no memory store here" in checked.stderr and "The stores agree" not in checked.stdout
    expected = "holds no history database (history.db)" if exists else "No such file or directory"
    assert expected in checked.stderr, checked.stderr
    assert (sorted(data_dir.iterdir()) == []) if exists else not data_dir.exists()
