"""Helpers for tests that run the server as a real subprocess (stdio, HTTP, CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "milvus_memory_mcp", "serve"]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update({"MEMORY_DATA_DIR": str(data_dir), "MEMORY_FLUSH_DELAY": "0.05", **extra})
    return env


def params(data_dir: Path, **extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "milvus_memory_mcp", "serve"],
        env=server_env(data_dir, **extra),
        cwd=str(ROOT),
    )


def rpc(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def read_until(proc: subprocess.Popen[bytes], want_id: int, deadline: float) -> dict[str, Any]:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("server closed stdout")
        message = json.loads(line)  # every stdout line must be a JSON-RPC message
        assert message.get("jsonrpc") == "2.0", line
        if message.get("id") == want_id:
            return message
    raise AssertionError("no reply in time")


async def run_cli(data_dir: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """`milvus-memory-mcp ARGS` on `data_dir` as a user would run it: (exit code, stdout, stderr)."""
    done = await anyio.run_process(
        [sys.executable, "-m", "milvus_memory_mcp", *args], env=server_env(data_dir, **env), cwd=str(ROOT), check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def run_doctor(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`milvus-memory-mcp doctor` on `data_dir`, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "milvus_memory_mcp", "doctor", *args],
        env=server_env(data_dir),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )


def spawn_stdio(data_dir: Path, stderr: Any = subprocess.DEVNULL, **env: str) -> subprocess.Popen[bytes]:
    """`milvus-memory-mcp serve` over stdio as a raw process (pipes for stdin and stdout)."""
    return subprocess.Popen(
        SERVE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=server_env(data_dir, **env),
        cwd=str(ROOT),
    )


def handshake(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
    """`initialize` (answered) then `notifications/initialized`; returns the initialize answer."""
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
    answer = read_until(proc, 1, deadline)
    rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return answer


def search_once(proc: subprocess.Popen[bytes]) -> None:
    """Handshake with a raw stdio server process, then one search (which must answer)."""
    deadline = time.monotonic() + 60
    handshake(proc, deadline)
    search = {"name": "search_memories", "arguments": {"query": "hobbies", "user_id": "u"}}
    rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": search})
    assert "result" in read_until(proc, 2, deadline)


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM (an orderly stop), then SIGKILL if it takes longer than `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
