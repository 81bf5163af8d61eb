"""Stateless replicas for tests and benchmarks: N `milvus-memory-mcp serve --transport streamable-http`
processes on free loopback ports, each with its own data dir (as on separate machines), all with
the same settings: one PostgreSQL history database and one Milvus server collection."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from .processes import ROOT, SERVE, server_env, stop


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def spawn(data_dir: Path, env: dict[str, str]) -> Replica:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}.log"
    proc = subprocess.Popen(
        [*SERVE, "--transport", "streamable-http", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=server_env(data_dir, **env),
        cwd=str(ROOT),
    )
    return Replica(proc, data_dir, log)


def wait_listening(replica: Replica, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", replica.log.read_bytes())
        if found:
            replica.port = int(found.group(1))
            return
        if replica.proc.poll() is not None:
            raise AssertionError(f"replica exited: {replica.log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"replica did not start in time: {replica.log.read_text()}")


def start_replicas(base: Path, count: int, env: dict[str, str]) -> list[Replica]:
    """`count` replicas started together; each listening when this returns."""
    replicas = [spawn(base / f"replica{i}", env) for i in range(count)]
    try:
        for r in replicas:
            wait_listening(r)
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.proc.poll() is None:
            stop(r.proc)


@asynccontextmanager
async def connect(replica: Replica) -> AsyncIterator[Client]:
    async with create_mcp_http_client() as http:
        async with Client(streamable_http_client(replica.endpoint, http_client=http), read_timeout_seconds=60) as c:
            yield c


@asynccontextmanager
async def connect_all(replicas: list[Replica]) -> AsyncIterator[list[Client]]:
    """One MCP client per replica (a load balancer's sticky sessions)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(r)) for r in replicas]
