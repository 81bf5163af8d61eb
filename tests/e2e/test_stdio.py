"""The server as a real stdio subprocess: protocol-only stdout, lazy start-up, errors that don't kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from ..conftest import call, error_of
from ..support.processes import ROOT, params, read_until, rpc, server_env

pytestmark = pytest.mark.anyio


async def test_stdio_subprocess_serves_every_tool_and_survives_bad_calls(tmp_path: Path) -> None:
    async with Client(params(tmp_path), read_timeout_seconds=60) as client:
        assert len((await client.list_tools()).tools) == 9
        assert client.instructions and "user_id" in client.instructions
        added = (await call(client, "add_memory", messages="Has two cats", user_id="s"))["results"][0]
        assert "empty" in await error_of(client, "add_memory", messages="", user_id="s")
        assert "No memory" in await error_of(client, "get_memory", memory_id="00000000-0000-4000-8000-000000000000")
        hits = (await call(client, "search_memories", query="pets", user_id="s"))["results"]
        assert hits[0]["id"] == added["id"]
        assert len((await call(client, "memory_history", memory_id=added["id"]))["events"]) == 1


def test_stdout_carries_only_protocol_messages_and_handshake_does_not_wait_for_stores(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_memory_mcp", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(tmp_path, MEMORY_LOG_LEVEL="DEBUG"),
        cwd=str(ROOT),
    )
    try:
        deadline = time.monotonic() + 60
        rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
        )
        init = read_until(proc, 1, deadline)
        assert init["result"]["serverInfo"]["name"] == "milvus-memory-mcp"
        rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert len(read_until(proc, 2, deadline)["result"]["tools"]) == 9
        rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "add_memory", "arguments": {"messages": "Runs marathons", "user_id": "raw"}},
            },
        )
        reply = read_until(proc, 3, deadline)
        assert reply["result"]["structuredContent"]["results"][0]["event"] == "ADD"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert b"memory store ready" in stderr  # logs went to stderr


async def test_handshake_and_tool_list_answer_while_the_store_is_held_by_another_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pymilvus import MilvusClient; "
            f"MilvusClient({str(tmp_path / 'milvus.db')!r}); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        async with Client(params(tmp_path), read_timeout_seconds=60) as client:
            assert len((await client.list_tools()).tools) == 9
            message = await error_of(client, "add_memory", messages="x", user_id="u")
            assert "another process" in message
            assert len((await client.list_tools()).tools) == 9  # still alive
    finally:
        holder.kill()
        holder.wait()


def test_unknown_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "milvus_memory_mcp", "serve"],
        env=server_env(tmp_path, MEMORY_USERID="alice"),
        cwd=str(ROOT),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"unknown setting MEMORY_USERID" in proc.stderr
    assert proc.stdout == b""


async def test_a_call_after_a_long_idle_pause_still_works(tmp_path: Path) -> None:
    # Desktop clients keep a stdio server open for hours; the store must still answer after idling.
    idle = float(os.environ.get("MEMORY_TEST_IDLE_SECONDS", "90"))
    async with Client(params(tmp_path), read_timeout_seconds=60) as client:
        added = (await call(client, "add_memory", messages="Before the pause", user_id="idle"))["results"][0]
        await anyio.sleep(idle)
        hits = (await call(client, "search_memories", query="pause", user_id="idle"))["results"]
        assert [h["id"] for h in hits] == [added["id"]]
        await call(client, "add_memory", messages="After the pause", user_id="idle")
