"""`reembed` as a user runs it: the CLI against a real owner process that keeps serving searches,
and SIGKILLs at every point of a run (tests/support/reembed_driver.py), after which the store
still works and a re-run of the CLI finishes. Old and new embedders are two models of the
OpenAI-compatible fake (64 and 32 dimensions), to keep it fast."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import call
from ..support.fake_openai import FakeOpenAI
from ..support.processes import ROOT, params, server_env

pytestmark = pytest.mark.anyio
NEW = "openai:text-embedding-3-small"
TOPICS = ["tennis", "piano", "Lisbon", "coffee", "hiking", "chess", "sushi", "Rust", "jazz", "gardening"]
COUNT = 40


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    openai_api.dims = 64
    return openai_api


def old_env(fake: FakeOpenAI) -> dict[str, str]:
    return {
        "MEMORY_EMBEDDER": "openai:model-a",
        "MEMORY_EMBEDDING_DIMS": "64",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "test",
    }


def new_env(fake: FakeOpenAI) -> dict[str, str]:
    return old_env(fake) | {"MEMORY_EMBEDDER": NEW, "MEMORY_EMBEDDING_DIMS": "32"}


async def run(data_dir: Path, args: list[str], env: dict[str, str], code: int | None = 0) -> tuple[str, str, int]:
    done = await anyio.run_process([sys.executable, *args], env=server_env(data_dir, **env), cwd=str(ROOT), check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert code is None or done.returncode == code, (args, done.returncode, out, err)
    return out, err, done.returncode


async def cli(data_dir: Path, env: dict[str, str], *args: str, code: int = 0) -> tuple[str, str]:
    out, err, _ = await run(data_dir, ["-m", "milvus_memory_mcp", *args], env, code)
    return out, err


async def seed(data_dir: Path) -> dict[str, str]:
    """COUNT memories of alice under the old embedder: id -> text."""
    settings = Settings(data_dir=data_dir, embedder="openai:model-a", embedding_dims=64, flush_delay=0.05)
    texts = [f"Fact {i}: likes {TOPICS[i % 10]} with {TOPICS[(i * 3 + 1) % 10]} number{i}" for i in range(COUNT)]
    async with MemoryService(settings) as svc:
        result = await svc.add([{"role": "user", "content": t} for t in texts], Scope("alice"), infer=False)
        return {e.id: e.memory for e in result.results}


async def found(data_dir: Path, env: dict[str, str], memories: dict[str, str]) -> None:
    """Every memory is the first hit of a search for its own words (through the core, configured
    as `env` configures a server)."""
    settings = Settings.load({k: v for k, v in server_env(data_dir, **env).items() if k.startswith("MEMORY_")})
    async with MemoryService(settings) as svc:
        for memory_id, text in memories.items():
            assert (await svc.search(text, Scope("alice"), limit=3)).results[0].id == memory_id, text
        assert {m.id for m in (await svc.list(Scope("alice"), limit=1000)).results} == set(memories)


def collections(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "milvus.db" / "collections").iterdir())


async def test_reembed_through_a_running_owner_that_keeps_serving(tmp_path: Path, fake: FakeOpenAI) -> None:
    data_dir = tmp_path / "data"
    memories = await seed(data_dir)
    probe_id, probe = next(iter(memories.items()))
    with anyio.fail_after(300):
        async with Client(params(data_dir, **old_env(fake)), read_timeout_seconds=60) as owner:
            await call(owner, "search_memories", query=probe, user_id="alice")  # it owns the store now
            searches: list[str] = []
            finished = anyio.Event()

            async def keep_searching() -> None:
                while not finished.is_set():
                    hits = (await call(owner, "search_memories", query=probe, user_id="alice"))["results"]
                    searches.append(hits[0]["id"])

            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_searching)
                added = await call(owner, "add_memory", messages="Collects vinyl records", user_id="alice")
                memories[added["results"][0]["id"]] = "Collects vinyl records"
                out, err = await cli(
                    data_dir, old_env(fake), "reembed", "--embedder", NEW, "--embedding-dims", "32", "--batch", "5"
                )
                finished.set()
            assert f"Re-embedded {COUNT + 1} memories with {NEW} (32 dims) into collection memories_1" in out, err
            assert f"MEMORY_EMBEDDER={NEW} MEMORY_EMBEDDING_DIMS=32" in out
            assert len(searches) > 3 and set(searches) == {probe_id}  # served all along, the same answer
            # The owner now serves the new collection with the new embedder.
            hits = (await call(owner, "search_memories", query="vinyl records", user_id="alice"))["results"]
            assert hits[0]["memory"] == "Collects vinyl records"
            stats = json.loads((await cli(data_dir, old_env(fake), "stats", "--json"))[0])
            assert stats["collection"] == "memories_1" and stats["embedder"]["model"] == NEW
    assert collections(data_dir) == ["memories_1"]
    await found(data_dir, new_env(fake), memories)
    _, err = await cli(data_dir, old_env(fake), "search", "tennis", "--user-id", "alice", code=1)
    assert "created with embedder 'openai:text-embedding-3-small'" in err
    assert "milvus-memory-mcp reembed --embedder NEW" in err


@pytest.mark.parametrize("point", ["before", "during", "switch", "switched", "drop"])
async def test_a_reembed_killed_at_any_point_leaves_a_working_store_and_a_rerun_finishes(
    tmp_path: Path, fake: FakeOpenAI, point: str
) -> None:
    data_dir = tmp_path / "data"
    memories = await seed(data_dir)
    with anyio.fail_after(300):
        _, err, code = await run(
            data_dir, ["-m", "tests.support.reembed_driver", point, NEW, "32"], old_env(fake), code=None
        )
        assert code == -signal.SIGKILL, err
        switched = point in ("switched", "drop")
        # Killed before the switch record, the old collection serves the old embedder; after it,
        # the new one serves the new embedder.
        await found(data_dir, new_env(fake) if switched else old_env(fake), memories)
        if point == "during":
            out, _ = await cli(data_dir, old_env(fake), "stats")
            assert f"reembed         into memories_1 with {NEW}: 20/{COUNT} (unfinished)" in out
        out, err = await cli(data_dir, old_env(fake), "reembed", "--embedder", NEW, "--embedding-dims", "32")
        assert f"Re-embedded {COUNT} memories with {NEW} (32 dims) into collection memories_1" in out, err
    assert collections(data_dir) == ["memories_1"]
    await found(data_dir, new_env(fake), memories)


def on_a_terminal(data_dir: Path, env: dict[str, str], *args: str) -> str:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe); return what the terminal got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a pty starts 0 columns wide
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last writer closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "milvus_memory_mcp", *args],
            env=server_env(data_dir, **env),
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, (args, terminal)
    return terminal


async def test_export_import_and_reembed_draw_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    data_dir = tmp_path / "data"
    await seed(data_dir)
    dump = tmp_path / "dump.jsonl"
    terminal = await anyio.to_thread.run_sync(on_a_terminal, data_dir, old_env(fake), "export", "-o", str(dump))
    assert "export: 100%|" in terminal and f"{COUNT}/{COUNT}" in terminal
    terminal = await anyio.to_thread.run_sync(on_a_terminal, tmp_path / "copy", old_env(fake), "import", str(dump))
    assert "import: 100%|" in terminal and f"{COUNT}/{COUNT}" in terminal
    args = ("reembed", "--embedder", NEW, "--embedding-dims", "32", "--batch", "10")
    terminal = await anyio.to_thread.run_sync(on_a_terminal, data_dir, old_env(fake), *args)
    assert "reembed: 100%|" in terminal and f"{COUNT}/{COUNT}" in terminal
    _, err = await cli(tmp_path / "copy", old_env(fake), *args)  # not a terminal: no bar
    assert "%|" not in err and "reembed:" not in err
