"""SIGTERM and SIGINT stop a real server promptly and in order: the Milvus write still queued
behind the last call is applied before the process exits, so no pending mark is left for the
next start (over stdio with stdin still open, as in a terminal, and over streamable HTTP)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from milvus_memory_mcp.history.sqlite import SQLiteHistory

from ..conftest import call
from ..support.processes import ROOT, read_until, rpc, search_once, server_env, spawn_stdio
from .test_http import wait_for_port

FLUSH_DELAY = "60"  # the queued write would wait this long without an orderly stop
SIGNALS = [signal.SIGTERM, signal.SIGINT]


def pending_marks(data: Path) -> list[str]:
    async def read() -> list[str]:
        history = SQLiteHistory(data / "history.db", "memories")
        await history.open()
        try:
            return await history.pending_ids()
        finally:
            await history.close()

    return anyio.run(read)


def stop_promptly(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    start = time.monotonic()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{sig.name} did not stop the server within 15 s") from None
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_stdio_server_flushes_and_exits_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    data = tmp_path / "data"
    # stdin is kept open: the server must not wait for it to close.
    proc = spawn_stdio(data, (tmp_path / "stderr").open("wb"), MEMORY_FLUSH_DELAY=FLUSH_DELAY)
    try:
        search_once(proc)
        add = {"name": "add_memory", "arguments": {"messages": "Sleeps with the window open", "user_id": "u"}}
        rpc(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": add})
        assert "result" in read_until(proc, 3, time.monotonic() + 60)
        stop_promptly(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "stderr").read_text()
    assert "Traceback" not in log, log
    assert pending_marks(data) == [], log


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_http_server_flushes_and_exits_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_memory_mcp", "serve", "--transport", "streamable-http", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=server_env(data, MEMORY_FLUSH_DELAY=FLUSH_DELAY),
        cwd=str(ROOT),
    )
    try:
        port = wait_for_port(proc, log, time.monotonic() + 60)

        async def write() -> None:
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), read_timeout_seconds=60) as c:
                await call(c, "add_memory", messages="Sleeps with the window open", user_id="u")

        anyio.run(write)
        stop_promptly(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()
    assert pending_marks(data) == [], log.read_text()
