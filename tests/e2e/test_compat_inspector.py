"""The official MCP Inspector CLI (a TypeScript client we did not write) against the real server.

Over stdio (the Inspector spawns `python -m server serve`) and streamable HTTP (a server subprocess on a
loopback port): tools/list passes `--strict` with no schema findings, and add_memory, search_memories
and memory_history return their structured results. `.ci/install-node-tools` puts Node.js 22 and the
Inspector into .ci/node; these tests skip only where that was not done.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..integration.test_tools import EXPECTED_TOOLS
from ..support.processes import ROOT, SERVE, server_env

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
MIN_NODE = (22, 19)  # the Inspector 2.12 engines field
MIN_INSPECTOR = (2, 12)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().lstrip("v").split(".")[:2])


def _find_inspector() -> tuple[Path, str] | str:
    """(bin dir holding node + inspector, inspector version), or why the tests must skip."""
    for bin_dir in (NODE_BIN, *(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)):
        node, inspector = shutil.which("node", path=str(bin_dir)), shutil.which("inspector", path=str(bin_dir))
        if not (node and inspector):
            continue
        node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        if _version(node_version) < MIN_NODE:
            continue
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        inspector_version = subprocess.run(
            [inspector, "--cli", "--version"], capture_output=True, text=True, env=env, timeout=60
        ).stdout.strip()
        if _version(inspector_version) >= MIN_INSPECTOR:
            return bin_dir, inspector_version
    return (
        "Node.js >= 22.19 with @modelcontextprotocol/inspector >= 2.12 not found; "
        "run `bash .ci/install-node-tools` (installs both from the npm registry into .ci/node)"
    )


_FOUND = _find_inspector()
pytestmark = pytest.mark.skipif(isinstance(_FOUND, str), reason=_FOUND if isinstance(_FOUND, str) else "")


def inspector(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run `inspector --cli --format json ARGS`; return (exit code, its JSON envelope, stderr)."""
    assert not isinstance(_FOUND, str)
    bin_dir = _FOUND[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [str(bin_dir / "inspector"), "--cli", "--format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=120,
    )
    envelope = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, envelope, proc.stderr


def stdio_target(data_dir: Path) -> list[str]:
    env = [f"{k}={v}" for k, v in server_env(data_dir).items() if k.startswith("MEMORY_")]
    return [
        *(a for pair in env for a in ("-e", pair)),
        "--cwd",
        str(ROOT),
        *SERVE,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    """A streamable-HTTP server subprocess on a free loopback port (no auth)."""
    port = _free_port()
    proc = subprocess.Popen(
        [*SERVE, "--transport", "streamable-http", "--port", str(port)],
        env=server_env(tmp_path / "data"),
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "HTTP server did not listen within 60 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def check_tool_list(target: list[str]) -> None:
    code, envelope, stderr = inspector("--strict", "--method", "tools/list", *target)
    assert code == 0, stderr
    assert "schemaFindings" not in envelope, envelope.get("schemaFindings")
    assert "Schema portability" not in stderr
    tools = {tool["name"]: tool for tool in envelope["result"]["tools"]}
    assert set(tools) == EXPECTED_TOOLS
    assert all(tool.get("outputSchema", {}).get("type") == "object" for tool in tools.values())


def check_add_search_history(target: list[str]) -> None:
    def call(tool: str, *tool_args: str) -> dict[str, Any]:
        code, envelope, stderr = inspector(
            "--method", "tools/call", "--tool-name", tool, "--tool-arg", *tool_args, *target
        )
        assert code == 0, (envelope, stderr)
        assert envelope["result"]["isError"] is False
        return envelope["result"]["structuredContent"]

    added = call(
        "add_memory",
        "messages=I am working on improving my tennis skills.",
        "user_id=alice",
        'metadata={"category": "hobbies"}',
    )["results"]
    assert [(a["memory"], a["event"]) for a in added] == [("I am working on improving my tennis skills.", "ADD")]
    memory_id = added[0]["id"]
    call("add_memory", "messages=I have a linear algebra midterm exam on November 20", "user_id=alice")

    hits = call("search_memories", "query=What are Alice's hobbies?", "user_id=alice", "limit=5")["results"]
    assert [h["id"] for h in hits][0] == memory_id and len(hits) == 2
    assert hits[0]["metadata"] == {"category": "hobbies"} and "hash" not in hits[0]  # compact
    assert hits[0]["score"] > hits[1]["score"]

    events = call("memory_history", f"memory_id={memory_id}")["events"]
    assert [(e["event"], e.get("old_memory"), e.get("new_memory")) for e in events] == [
        ("ADD", None, "I am working on improving my tennis skills.")
    ]

    # A bad call comes back as a tool error carrying our message (exit code 5), not a dead server.
    code, envelope, _ = inspector(
        "--method", "tools/call", "--tool-name", "memory_history", "--tool-arg", "memory_id=nope", *target
    )
    assert code == 5 and envelope["result"]["isError"] is True
    assert "'nope' is not a valid memory id" in envelope["result"]["content"][0]["text"]


def test_inspector_strict_tool_list_over_stdio_has_no_schema_findings(tmp_path: Path) -> None:
    check_tool_list(stdio_target(tmp_path))


def test_inspector_calls_add_search_history_over_stdio(tmp_path: Path) -> None:
    check_add_search_history(stdio_target(tmp_path))


def test_inspector_strict_tool_list_and_calls_over_streamable_http(http_url: str) -> None:
    target = ["--transport", "http", "--server-url", http_url]
    check_tool_list(target)
    check_add_search_history(target)
