"""`export --output PATH` where PATH cannot be written (a missing directory, a directory, a full
device, a write refused part way) says so in one line on stderr and exits 1, as `import` does for a
file it cannot read, and leaves no partial file: an existing file stays as it was."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, make_settings
from ..support.processes import ROOT, server_env

pytestmark = pytest.mark.anyio

MEMORIES = 40
FILE_LIMIT = 64 * 1024  # bytes any file of the export process may grow to: ~a quarter of the export


def export(data: Path, output: Path, *, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # in the child: writes past `file_limit` fail with EFBIG (Python ignores SIGXFSZ)
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-m", "milvus_memory_mcp", "export", "--output", str(output)],
        env=server_env(data),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def refused(done: subprocess.CompletedProcess[str], output: Path, reason: str) -> None:
    assert done.returncode == 1, done
    assert done.stdout == "", done.stdout
    assert done.stderr == f"milvus-memory-mcp export: cannot write {output}: {reason}\n", done.stderr


async def seed(data: Path, embedder: LocalEmbedder) -> None:
    """MEMORIES memories of ~2 KB each: an export of ~4 * MEMORIES KB (text and history)."""
    async with MemoryService(make_settings(data), embedder=embedder) as service:
        async with Client(build_server(service)) as client:
            for i in range(MEMORIES):
                text = f"Fact number {i}: " + " ".join(f"word{i}x{j}" for j in range(200))
                await call(client, "add_memory", messages=text, user_id="alice", infer=False)


async def test_an_output_path_that_cannot_be_written_is_one_line_naming_it(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(120):
        await seed(data, local_embedder)
    out = tmp_path / "out"
    out.mkdir()
    (out / "plain.txt").write_text("a file")

    missing = out / "no" / "such" / "dir" / "export.jsonl"
    refused(export(data, missing), missing, "No such file or directory")
    refused(export(data, out), out, "Is a directory")
    under_a_file = out / "plain.txt" / "export.jsonl"
    refused(export(data, under_a_file), under_a_file, "Not a directory")
    if Path("/dev/full").exists():  # a device is written in place: the write itself fails
        refused(export(data, Path("/dev/full")), Path("/dev/full"), "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["plain.txt"]  # nothing left behind
    assert (out / "plain.txt").read_text() == "a file"


async def test_an_export_refused_part_way_leaves_no_partial_file(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(120):
        await seed(data, local_embedder)
    out = tmp_path / "out"
    out.mkdir()
    new, existing = out / "new.jsonl", out / "existing.jsonl"
    existing.write_text("the previous export\n")

    refused(export(data, new, file_limit=FILE_LIMIT), new, "File too large")
    refused(export(data, existing, file_limit=FILE_LIMIT), existing, "File too large")
    assert sorted(p.name for p in out.iterdir()) == ["existing.jsonl"]  # no partial file, no temporary one
    assert existing.read_text() == "the previous export\n"

    done = export(data, existing)  # without the limit: written whole, in place of the old one
    assert done.returncode == 0 and done.stderr == "", done
    lines = existing.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["counts"]["memories"] == MEMORIES and len(lines) == 1 + MEMORIES
    assert len(existing.read_bytes()) > 2 * FILE_LIMIT  # the limit did cut the export part way
    assert sorted(p.name for p in out.iterdir()) == ["existing.jsonl"]
