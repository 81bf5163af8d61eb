"""An unusable data dir, a read-only file system and a full disk give clear errors and lose nothing.

The read-only and full-disk cases use a real, small tmpfs mounted for the test (root only; they
are skipped elsewhere). The unusable-path cases work for any user (root ignores permissions, but
not a data dir below a regular file).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from milvus_memory_mcp import doctor
from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, error_of, make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a file system that really fills up or goes read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full; delete it to free the space again."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_data_dir_below_a_regular_file_is_reported_on_the_call_and_the_server_lives(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings = make_settings(tmp_path / "a-file" / "data")
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        message = await error_of(client, "add_memory", messages="x", user_id="u")
        assert "history database" in message and "Not a directory" in message and "MEMORY_DATA_DIR" in message
        assert len((await client.list_tools()).tools) == 9


async def test_milvus_file_below_a_regular_file_is_reported_clearly(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings = make_settings(tmp_path / "data", milvus_uri=str(tmp_path / "a-file" / "sub" / "milvus.db"))
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        # Searches confined to a scope are answered from SQLite and the search index, without Milvus.
        assert (await call(client, "search_memories", query="x", user_id="u"))["results"] == []
        message = await error_of(client, "add_memory", messages="x", user_id="u")
        assert "Milvus Lite file" in message and "Not a directory" in message and "MEMORY_MILVUS_URI" in message


async def test_read_only_file_system_is_reported_at_start_up_and_nothing_is_lost(
    small_fs: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(small_fs / "data")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.add("Survives a read-only disk", Scope("u"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        message = await error_of(client, "add_memory", messages="x", user_id="u")
        assert "read-only" in message.lower() or "readonly" in message.lower(), message
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert [m.memory for m in (await svc.list(Scope("u"))).results] == ["Survives a read-only disk"]
        assert (await doctor.check(svc)).clean


async def test_full_disk_refuses_the_write_clearly_and_changes_nothing(
    small_fs: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(small_fs / "data")
    async with MemoryService(settings, embedder=local_embedder) as svc, Client(build_server(svc)) as client:
        kept = (await call(client, "add_memory", messages="Written before the disk filled", user_id="u"))["results"][0]
        filler = fill(small_fs)
        for tool, args in [
            ("add_memory", {"messages": "A long fact " + "y" * 4000, "user_id": "u"}),
            ("update_memory", {"memory_id": kept["id"], "data": "Changed on a full disk " + "z" * 4000}),
            ("delete_memory", {"memory_id": kept["id"]}),
        ]:
            message = await error_of(client, tool, **args)
            assert "disk is full" in message and "Nothing was changed" in message, message
        assert (await call(client, "get_memory", memory_id=kept["id"]))["memory"] == "Written before the disk filled"
        filler.unlink()
        await call(client, "add_memory", messages="Written after space was freed", user_id="u")
        assert len((await call(client, "list_memories", user_id="u"))["results"]) == 2
        report = await doctor.check(svc)
        assert report.clean, report.lines()


async def test_full_disk_under_milvus_only_is_undone_and_settled_once_space_is_back(
    small_fs: Path, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    # Milvus first (MEMORY_SEARCH_INDEX=false): a write Milvus refuses is refused and undone.
    settings = make_settings(small_fs / "data", history_path=tmp_path / "history.db", search_index=False)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        kept = (await svc.add("Written before the disk filled", Scope("u"))).results[0]
        filler = fill(small_fs)
        with pytest.raises(BackendError, match="No space left on device.*Nothing was changed"):
            await svc.update(kept.id, "Changed on a full disk")
        with pytest.raises(BackendError, match="No space left on device.*Nothing was changed"):
            await svc.add("Added on a full disk", Scope("u"))
        assert [m.memory for m in (await svc.list(Scope("u"))).results] == ["Written before the disk filled"]
        filler.unlink()
        await svc.add("Written after space was freed", Scope("u"))  # settles what the failures left
        report = await doctor.check(svc)
        assert report.clean, report.lines()
        hits = (await svc.search("Written before the disk filled", Scope("u"), limit=1)).results
        assert hits[0].memory == "Written before the disk filled"


async def test_full_disk_under_milvus_only_keeps_acknowledged_writes_and_catches_up_once_space_is_back(
    small_fs: Path, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    # With the search index (the default on Lite) Milvus is written behind SQLite, at the flush: a
    # write SQLite recorded is acknowledged and served; Milvus gets it once it can.
    settings = make_settings(small_fs / "data", history_path=tmp_path / "history.db")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        kept = (await svc.add("Written before the disk filled", Scope("u"))).results[0]
        await svc.flush()
        filler = fill(small_fs)
        await svc.update(kept.id, "Changed on a full disk")
        added = (await svc.add("Added on a full disk", Scope("u"))).results[0]
        with pytest.raises(BackendError, match="No space left on device"):
            await svc.flush()
        listed = sorted(m.memory for m in (await svc.list(Scope("u"))).results)
        assert listed == ["Added on a full disk", "Changed on a full disk"]
        hits = (await svc.search("added when the disk was full", Scope("u"), limit=1)).results
        assert hits[0].id == added.id
        assert sorted(await svc.history.pending_ids()) == sorted([kept.id, added.id])  # not confirmed yet
        filler.unlink()
        await svc.add("Written after space was freed", Scope("u"))  # settles what the failure left
        await svc.flush()
        report = await doctor.check(svc)
        assert report.clean, report.lines()
        assert await svc.history.pending_ids() == []
    async with MemoryService(settings, embedder=local_embedder) as svc:  # and it all survives a restart
        listed = sorted(m.memory for m in (await svc.list(Scope("u"))).results)
        assert listed == ["Added on a full disk", "Changed on a full disk", "Written after space was freed"]
        assert (await doctor.check(svc)).clean
