"""The local model in its worker process: same vectors, replaced when it dies, gone with the server."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.embedders.local_worker import MODEL_SHA256, verified
from milvus_memory_mcp.errors import EmbedderError

from ..support.processes import search_once, spawn_stdio

pytestmark = pytest.mark.anyio


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def gone(pid: int) -> bool:
    """The process has exited (a zombie left for a parent that does not reap it counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_vectors_are_unit_length_ordered_and_closest_for_paraphrases(local_embedder: LocalEmbedder) -> None:
    texts = ["I love hiking in the mountains", "Enjoys mountain hikes", "The quarterly tax form is due"]
    vectors = await local_embedder.embed(texts)
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert await local_embedder.embed(texts[1:2]) == vectors[1:2]  # same text, same vector, alone or in a batch
    assert await local_embedder.embed([]) == []


async def test_many_texts_come_back_in_order_across_batches(local_embedder: LocalEmbedder) -> None:
    texts = [f"memory number {i} about topic {i % 7}" for i in range(70)]  # more than one batch of 32
    together = await local_embedder.embed(texts)
    alone = [(await local_embedder.embed([t]))[0] for t in (texts[0], texts[33], texts[69])]
    for i, vector in zip((0, 33, 69), alone, strict=True):
        assert cosine(together[i], vector) > 0.9999


async def test_a_killed_worker_is_replaced_on_the_next_call() -> None:
    embedder = LocalEmbedder()
    try:
        before = await embedder.embed(["Plays the cello"])
        pid = embedder.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid)
        assert await embedder.embed(["Plays the cello"]) == before
        assert embedder.pid not in (None, pid)
    finally:
        await embedder.close()


async def test_close_ends_the_worker_and_a_later_call_starts_another() -> None:
    embedder = LocalEmbedder()
    await embedder.open()
    pid = embedder.pid
    assert pid is not None
    await embedder.close()
    assert embedder.pid is None and wait_gone(pid)
    assert len((await embedder.embed(["Back again"]))[0]) == 384
    await embedder.close()


async def test_a_worker_that_cannot_start_gives_an_error_naming_it() -> None:
    embedder = LocalEmbedder(python="/bin/false")
    refused = r"local embedding model's process ended before it was ready \(exit code 1\)"
    with pytest.raises(EmbedderError, match=refused):
        await embedder.open()
    with pytest.raises(EmbedderError, match="ended"):
        await embedder.embed(["anything"])


def test_a_file_whose_digest_differs_from_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    refused = rf"embedding model at .*model.onnx has sha256 [0-9a-f]{{64}}, expected {MODEL_SHA256}"
    with pytest.raises(EmbedderError, match=refused):
        verified(fake, MODEL_SHA256, "embedding model")


def spawn_server(data_dir: Path) -> subprocess.Popen[bytes]:
    return spawn_stdio(data_dir)


def test_the_model_worker_ends_when_the_server_is_killed(tmp_path: Path) -> None:
    proc = spawn_server(tmp_path)
    try:
        search_once(proc)
        [worker] = children(proc.pid)
        assert b"local_worker" in Path(f"/proc/{worker}/cmdline").read_bytes()
        proc.kill()
        proc.wait()
        assert wait_gone(worker), "the model's process outlived the server"
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_forwards_to_the_owner_stops_its_model_worker(tmp_path: Path) -> None:
    owner = spawn_server(tmp_path)
    forwarder = None
    try:
        search_once(owner)
        forwarder = spawn_server(tmp_path)
        search_once(forwarder)  # answered by the owner
        deadline = time.monotonic() + 15
        while children(forwarder.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in children(forwarder.pid) if not gone(p)] == []
        assert len(children(owner.pid)) == 1
    finally:
        for proc in (forwarder, owner):
            if proc is not None:
                proc.kill()
                proc.wait()
