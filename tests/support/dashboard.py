"""A real server process with the dashboard (streamable HTTP, bearer tokens), seeded through MCP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from .processes import ROOT, server_env, stop

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
ALICE_READER = "alice-reader-0123456789abcdef"
TOKENS = {
    ALICE: {"user_id": "alice", "access": "read-write"},
    BOB: {"user_id": "bob", "access": "read-write"},
    ALICE_READER: {"user_id": "alice", "access": "read-only"},
}
SCRIPT = "<script>window.__pwned = 1</script> Alice's hostile note"
ATTRIBUTE = '" onmouseover="window.__pwned = 2" x="'
IMAGE = '<img src=x onerror="window.__pwned = 3">'
HOSTILE_META = {"category": "<b>bold</b>", "note": '" onfocus="window.__pwned = 4'}


@dataclass
class Running:
    base: str
    log: Path
    ids: dict[str, str]


def wait_for(pattern: bytes, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> re.Match[bytes]:
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_bytes())
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in the log in time: {log.read_text()}")


@contextmanager
def server(tmp: Path, *args: str, log_name: str = "server.log") -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`milvus-memory-mcp ARGS` on the data dir tmp/data, logging to tmp/LOG_NAME; stopped at exit."""
    log = tmp / log_name
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_memory_mcp", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=server_env(tmp / "data"),
        cwd=str(ROOT),
    )
    try:
        yield proc, log
    finally:
        stop(proc)


async def _add(base: str, token: str, texts: list[tuple[str, dict[str, Any]]]) -> list[str]:
    ids = []
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(base + "/mcp", http_client=http), read_timeout_seconds=60) as client:
            for text, metadata in texts:
                result = await client.call_tool("add_memory", {"messages": text, "metadata": metadata, "infer": False})
                assert not result.is_error, result
                ids.append((result.structured_content or {})["results"][0]["id"])
    return ids


def seed(base: str, token: str, texts: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return anyio.run(_add, base, token, texts)


@contextmanager
def running_dashboard(tmp: Path) -> Iterator[Running]:
    """A server with alice's memories (hostile ones included) and one of bob's."""
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    with server(tmp, "serve", "--transport", "streamable-http", "--port", "0", "--auth-tokens", str(tokens)) as (
        proc,
        log,
    ):
        port = int(wait_for(rb"listening on http://127\.0\.0\.1:(\d+)", proc, log, time.monotonic() + 60).group(1))
        base = f"http://127.0.0.1:{port}"
        texts = [
            ("Alice plays jazz piano on Sundays", {"category": "hobbies"}),
            ("Alice is allergic to peanuts", {"category": "health"}),
            (SCRIPT, HOSTILE_META),
            (ATTRIBUTE, {}),
            (IMAGE, {}),
        ]
        names = ["piano", "peanuts", "script", "attribute", "image"]
        ids = dict(zip(names, seed(base, ALICE, texts), strict=True))
        ids["bob"] = seed(base, BOB, [("Bob collects vintage synthesizers", {})])[0]
        yield Running(base, log, ids)


def login(client: httpx2.Client, token: str) -> httpx2.Response:
    """Log in through the form as a browser would (the nonce from the page, the cookie kept)."""
    page = client.get("/ui/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce, page.text
    return client.post("/ui/login", data={"nonce": nonce.group(1), "token": token, "next": ""})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)
