"""A real server process on a free loopback port, real MCP clients over streamable HTTP and SSE,
bearer tokens bound to alice's and bob's scopes."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ..conftest import call, error_of
from ..support.processes import ROOT, SERVE, server_env, stop

pytestmark = pytest.mark.anyio

TOKENS = {
    "alice-token-0123456789abcdef": {"user_id": "alice", "agent_id": None, "access": "read-write"},
    "bob-token-0123456789abcdef00": {"user_id": "bob", "agent_id": None, "access": "read-write"},
    "alice-reader-0123456789abcdef": {"user_id": "alice", "agent_id": None, "access": "read-only"},
}
ALICE, BOB, ALICE_READER = TOKENS


@dataclass
class RunningServer:
    transport: str
    base: str
    log: Path

    @property
    def endpoint(self) -> str:
        return self.base + ("/sse" if self.transport == "sse" else "/mcp")


def start_server(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / "server.log"
    proc = subprocess.Popen(
        [*SERVE, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=server_env(tmp / "data"),
        cwd=str(ROOT),
    )
    return proc, log


def wait_for_port(proc: subprocess.Popen[bytes], log: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log.read_bytes())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError("server did not start in time")


@pytest.fixture(scope="module", params=["streamable-http", "sse"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(request.param)
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    proc, log = start_server(tmp, "--transport", request.param, "--port", "0", "--auth-tokens", str(tokens))
    try:
        port = wait_for_port(proc, log, time.monotonic() + 60)
        yield RunningServer(request.param, f"http://127.0.0.1:{port}", log)
    finally:
        stop(proc)


@asynccontextmanager
async def connect(server: RunningServer, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    if server.transport == "sse":
        async with Client(sse_client(server.endpoint, headers=headers), read_timeout_seconds=60) as client:
            yield client
    else:
        async with create_mcp_http_client(headers=headers) as http:
            transport = streamable_http_client(server.endpoint, http_client=http)
            async with Client(transport, read_timeout_seconds=60) as client:
                yield client


async def test_bound_tokens_never_reach_the_other_users_memories(running: RunningServer) -> None:
    ids: dict[str, str] = {}
    async with connect(running, ALICE) as alice, connect(running, BOB) as bob:
        ids["alice"] = (await call(alice, "add_memory", messages="Alice plays jazz piano"))["results"][0]["id"]
        ids["bob"] = (await call(bob, "add_memory", messages="Bob plays metal guitar"))["results"][0]["id"]
        for me, other, client in (("alice", "bob", alice), ("bob", "alice", bob)):
            # No scope argument: the token's scope applies.
            listed = (await call(client, "list_memories"))["results"]
            assert [m["id"] for m in listed] == [ids[me]]
            hits = (await call(client, "search_memories", query="who plays music"))["results"]
            assert [h["id"] for h in hits] == [ids[me]]
            # The other's scope by argument: refused, nothing shown.
            assert "limited to user_id" in await error_of(client, "list_memories", user_id=other)
            assert "limited to user_id" in await error_of(client, "search_memories", query="music", user_id=other)
            assert "limited to user_id" in await error_of(client, "delete_all_memories", user_id=other, confirm=True)
            assert "limited to user_id" in await error_of(client, "add_memory", messages="x", user_id=other)
            # The other's memory by id: the same answer as an unknown id.
            theirs = ids[other]
            for tool, extra in (
                ("get_memory", {}),
                ("memory_history", {}),
                ("update_memory", {"data": "hijacked"}),
                ("delete_memory", {}),
            ):
                assert f"No memory '{theirs}'" in await error_of(client, tool, memory_id=theirs, **extra)
        # Each memory is untouched, and delete_all with the token's own scope stays in it.
        for me, client in (("alice", alice), ("bob", bob)):
            memory = await call(client, "get_memory", memory_id=ids[me])
            assert memory["memory"] in ("Alice plays jazz piano", "Bob plays metal guitar")
            events = (await call(client, "memory_history", memory_id=ids[me]))["events"]
            assert [e["event"] for e in events] == ["ADD"]
        assert (await call(bob, "delete_all_memories", confirm=True))["deleted_count"] == 1
        assert [m["id"] for m in (await call(alice, "list_memories"))["results"]] == [ids["alice"]]
        await call(alice, "delete_memory", memory_id=ids["alice"])


async def test_read_only_token_reads_but_cannot_write(running: RunningServer) -> None:
    async with connect(running, ALICE) as alice, connect(running, ALICE_READER) as reader:
        added = (await call(alice, "add_memory", messages="Alice reads sci-fi"))["results"][0]
        assert [m["id"] for m in (await call(reader, "list_memories"))["results"]] == [added["id"]]
        assert "read-only" in await error_of(reader, "add_memory", messages="Reader's note")
        assert "read-only" in await error_of(reader, "update_memory", memory_id=added["id"], data="changed")
        assert "read-only" in await error_of(reader, "delete_memory", memory_id=added["id"])
        assert "read-only" in await error_of(reader, "delete_all_memories", confirm=True)
        assert (await call(alice, "get_memory", memory_id=added["id"]))["memory"] == "Alice reads sci-fi"
        await call(alice, "delete_memory", memory_id=added["id"])


async def test_missing_or_wrong_token_gets_401_and_health_needs_none(running: RunningServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-valid-token-at-all"}, {"Authorization": "Basic x"}):
            if running.transport == "sse":
                reply = await http.get(running.endpoint, headers=headers)
            else:
                reply = await http.post(running.endpoint, json=body, headers=headers)
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"].startswith("Bearer")
        deadline = time.monotonic() + 60
        health = await http.get(running.base + "/health")
        while health.status_code != 200 and time.monotonic() < deadline:
            await anyio.sleep(0.2)
            health = await http.get(running.base + "/health")
        assert health.status_code == 200 and health.json()["ready"] is True


async def test_foreign_host_header_is_refused_even_with_a_good_token(running: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {ALICE}", "Host": "evil.example:80"}
    async with httpx2.AsyncClient(timeout=30) as http:
        if running.transport == "sse":
            reply = await http.get(running.endpoint, headers=headers)
        else:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            reply = await http.post(running.endpoint, json=body, headers=headers)
    assert reply.status_code in (400, 403, 421)


async def test_every_request_and_tool_call_is_logged_without_text_or_token(running: RunningServer) -> None:
    async with connect(running, BOB) as bob:
        added = (await call(bob, "add_memory", messages="Bob's secret hobby is origami"))["results"][0]
        await call(bob, "delete_memory", memory_id=added["id"])
    log = running.log.read_text()
    calls = [json.loads(line.split(": ", 1)[1]) for line in log.splitlines() if '"event": "tool_call"' in line]
    assert {"tool": "add_memory", "scope": {"user_id": "bob"}, "outcome": "ok"}.items() <= calls[-2].items()
    assert isinstance(calls[-2]["duration_ms"], float)
    assert any('"event": "http"' in line and '"status": 401' in line for line in log.splitlines())
    assert "origami" not in log
    assert not any(token in log for token in TOKENS)


def test_public_bind_without_auth_or_named_hosts_is_refused(tmp_path: Path) -> None:
    for args, expected in (
        (["--host", "0.0.0.0"], b"Refusing to serve 0.0.0.0 without authentication"),
        (["--host", "0.0.0.0", "--allow-unauthenticated"], b"--allowed-hosts"),
    ):
        proc = subprocess.run(
            [
                *SERVE,
                "--transport",
                "streamable-http",
                "--port",
                "0",
                *args,
            ],
            env=server_env(tmp_path),
            cwd=str(ROOT),
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr


def test_bad_token_file_is_refused_without_echoing_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"short": {"user_id": "a", "access": "read-write"}}))
    proc = subprocess.run(
        [
            *SERVE,
            "--transport",
            "sse",
            "--port",
            "0",
            "--auth-tokens",
            str(tokens),
        ],
        env=server_env(tmp_path),
        cwd=str(ROOT),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"entry #1" in proc.stderr and b"short" not in proc.stderr.replace(b"shorter", b"")
