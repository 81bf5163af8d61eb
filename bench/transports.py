"""p50/p95 of add_memory and search_memories through each path, with concurrent clients.

Paths (each on a fresh data dir in a temp dir, Milvus Lite + the local embedder):
- direct stdio: N concurrent callers on one stdio session to the process that owns the store;
- forwarded stdio: N concurrent callers on one stdio session to a second process on the same data
  dir, which forwards every call to the owner over its Unix socket;
- streamable HTTP: N separate MCP sessions (each its own HTTP client, bearer token) to one server.

    python bench/transports.py [--clients 10] [--ops 20]

Bounded: clients x ops adds then clients x ops searches per path. Numbers are noisy on a shared
machine; run it twice.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"


def env(data_dir: Path, log_level: str = "WARNING") -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    out.update({"MEMORY_DATA_DIR": str(data_dir), "MEMORY_LOG_LEVEL": log_level})
    return out


def stdio(data_dir: Path) -> Client:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "milvus_memory_mcp", "serve"], env=env(data_dir), cwd=str(ROOT)
    )
    return Client(params, read_timeout_seconds=120)


async def checked(client: Client, tool: str, args: dict[str, Any]) -> float:
    start = time.perf_counter()
    result = await client.call_tool(tool, args)
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return elapsed


async def measure(clients: list[Client], ops: int) -> dict[str, list[float]]:
    """Every caller adds `ops` memories concurrently with the others, then searches `ops` times."""
    times: dict[str, list[float]] = {"add": [], "search": []}
    await checked(clients[0], "add_memory", {"messages": "warm-up", "user_id": "warm"})
    await checked(clients[0], "search_memories", {"query": "warm-up", "user_id": "warm"})

    async def caller(i: int, client: Client, kind: str) -> None:
        for n in range(ops):
            if kind == "add":
                args = {"messages": f"Caller {i} likes item {n} of the bench", "user_id": f"bench{i}"}
                times["add"].append(await checked(client, "add_memory", args))
            else:
                args = {"query": f"what item does caller {i} like", "user_id": f"bench{i}", "limit": 5}
                times["search"].append(await checked(client, "search_memories", args))

    for kind in ("add", "search"):
        async with anyio.create_task_group() as tg:
            for i in range(len(clients)):
                tg.start_soon(caller, i, clients[i], kind)
    return times


@asynccontextmanager
async def http_server(data_dir: Path) -> AsyncIterator[str]:
    data_dir.mkdir(parents=True)
    tokens = data_dir / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: {"user_id": None, "agent_id": None, "access": "read-write"}}))
    log = data_dir / "server.log"
    args = [
        "-m",
        "milvus_memory_mcp",
        "serve",
        "--transport",
        "streamable-http",
        "--port",
        "0",
        "--auth-tokens",
        str(tokens),
    ]
    with log.open("wb") as err:
        # INFO: the port is in the "listening on" line (the stdio servers log at WARNING to keep the terminal quiet)
        proc = subprocess.Popen([sys.executable, *args], env=env(data_dir, "INFO"), cwd=str(ROOT), stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(rb"listening on (http://\S+)", log.read_bytes())):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"HTTP server did not start: {log.read_text()}")
            await anyio.sleep(0.05)
        yield found.group(1).decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def run_path(name: str, open_clients: Callable[[AsyncExitStack], Awaitable[list[Client]]], ops: int) -> Any:
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack)
        with anyio.fail_after(600):
            return name, await measure(clients, ops)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--ops", type=int, default=20, help="adds and searches per client and path")
    args = parser.parse_args()
    n = args.clients
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-transports-") as tmp:
        shared = Path(tmp) / "shared"

        async def direct(stack: AsyncExitStack) -> list[Client]:
            owner = await stack.enter_async_context(stdio(shared))
            return [owner] * n

        async def forwarded(stack: AsyncExitStack) -> list[Client]:
            owner = await stack.enter_async_context(stdio(shared))
            await checked(owner, "list_memories", {"user_id": "warm"})  # it owns the store
            second = await stack.enter_async_context(stdio(shared))
            return [second] * n

        async def http(stack: AsyncExitStack) -> list[Client]:
            url = await stack.enter_async_context(http_server(Path(tmp) / "http"))
            out = []
            for _ in range(n):
                client = await stack.enter_async_context(
                    create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
                )
                out.append(await stack.enter_async_context(Client(streamable_http_client(url, http_client=client))))
            return out

        for name, opener in (("direct stdio", direct), ("forwarded stdio", forwarded), ("streamable HTTP", http)):
            results.append(await run_path(name, opener, args.ops))

    print(f"{n} concurrent clients, {args.ops} adds then {args.ops} searches each (ms)")
    print(f"{'path':<18}{'add p50':>10}{'add p95':>10}{'search p50':>12}{'search p95':>12}")
    for name, times in results:
        a, s = times["add"], times["search"]
        print(f"{name:<18}{pct(a, 50):>10.1f}{pct(a, 95):>10.1f}{pct(s, 50):>12.1f}{pct(s, 95):>12.1f}")


if __name__ == "__main__":
    anyio.run(main)
