"""Offline default: all-MiniLM-L6-v2 (int8 ONNX), run by a worker process (`local_worker`).

`start()` spawns the worker without waiting: `serve` calls it before importing the MCP SDK, so
the model is loaded by the time the first search arrives. A worker that dies is replaced on the
next call; it exits by itself when the server goes (its stdin closes).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from array import array
from pathlib import Path

import anyio

from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.embedders.local_worker import DIMENSIONS, FAILED, READY, TEXTS, read_frame, write_frame
from milvus_memory_mcp.errors import EmbedderError

logger = logging.getLogger(__name__)


class _WorkerGone(Exception):
    pass


class LocalEmbedder:
    model_id = "local:all-MiniLM-L6-v2-int8"
    dimensions = DIMENSIONS

    def __init__(self, threads: int = 1, python: str = sys.executable) -> None:
        self._threads = threads
        self._python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._lock = anyio.Lock()

    def start(self) -> None:
        """Spawn the worker if none is running; returns at once (the model loads meanwhile)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the `server` package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        level = logging.getLevelName(logging.getLogger("server").getEffectiveLevel())
        self._proc = subprocess.Popen(
            [self._python, "-m", "milvus_memory_mcp.embedders.local_worker", str(self._threads), level],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._ready = False

    async def open(self) -> None:
        async with self._lock:
            await self._open()

    async def _open(self) -> None:
        if self._ready and self._proc is not None and self._proc.poll() is None:
            return
        self.start()
        try:
            await anyio.to_thread.run_sync(self._await_ready)
        except _WorkerGone as e:
            self._stop()
            raise EmbedderError(f"The local embedding model's process ended before it was ready ({e}).") from e

    def _await_ready(self) -> None:
        tag, payload = self._receive()
        if tag != READY:
            self._stop()
            raise EmbedderError(payload.decode(errors="replace"))
        self._ready = True
        logger.info("local embedder ready (%s, %d dims)", self.model_id, self.dimensions)

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        if not texts:
            return []
        async with self._lock:
            for attempt in (1, 2):
                await self._open()
                try:
                    return await anyio.to_thread.run_sync(self._roundtrip, texts)
                except _WorkerGone as e:
                    self._stop()
                    if attempt == 2:
                        raise EmbedderError(f"The local embedding model's process ended ({e}); try again.") from e
                    logger.warning("the embedding worker ended (%s); starting a new one", e)
        raise AssertionError("unreachable")

    def _roundtrip(self, texts: list[str]) -> list[list[float]]:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            write_frame(self._proc.stdin, TEXTS, json.dumps(texts).encode())
        except (BrokenPipeError, ValueError) as e:  # ValueError: the pipe was closed by _stop
            raise _WorkerGone(self._exit_status()) from e
        tag, payload = self._receive()
        if tag == FAILED:
            raise EmbedderError(payload.decode(errors="replace"))
        floats = array("f", payload).tolist()
        d = self.dimensions
        return [floats[i : i + d] for i in range(0, len(floats), d)]

    def _receive(self) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            return read_frame(self._proc.stdout)
        except (EOFError, ValueError) as e:
            raise _WorkerGone(self._exit_status()) from e

    def _exit_status(self) -> str:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "no answer"
        return f"exit code {code}"

    def _stop(self) -> None:
        """End the worker: closing its stdin ends it; killed if it does not go within 5 s."""
        proc, self._proc, self._ready = self._proc, None, False
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    async def close(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._stop)

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs (for tests and diagnostics)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None
