"""Streamable HTTP sessions are bounded per credential: a token that opens session after session
(read-only included) only ever holds its own few, sent one after another or all at once, and never
locks another token out; idle sessions close after MEMORY_SESSION_IDLE_TIMEOUT."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2

from ..support.processes import stop
from .test_http import ALICE, ALICE_READER, BOB, TOKENS, start_server, wait_for_port

LIMIT = 4
IDLE = 2.0
HELLO = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextmanager
def running(tmp: Path, idle: float) -> Iterator[str]:
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    proc, log = start_server(
        tmp,
        *("--transport", "streamable-http", "--port", "0", "--auth-tokens", str(tokens)),
        *("--max-sessions-per-credential", str(LIMIT), "--session-idle-timeout", str(idle)),
    )
    try:
        yield f"http://127.0.0.1:{wait_for_port(proc, log, time.monotonic() + 60)}/mcp"
    finally:
        stop(proc)


def initialize(http: httpx2.Client, url: str, token: str) -> httpx2.Response:
    return http.post(url, json=HELLO, headers={**ACCEPT, "Authorization": f"Bearer {token}"})


def alive(http: httpx2.Client, url: str, token: str, sid: str) -> bool:
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {
        **ACCEPT,
        "Authorization": f"Bearer {token}",
        "mcp-session-id": sid,
        "mcp-protocol-version": "2025-06-18",
    }
    status = http.post(url, json=ping, headers=headers).status_code
    assert status in (200, 404), status
    return status == 200


def test_one_credential_opening_many_sessions_keeps_only_its_limit_and_locks_nobody_out(tmp_path: Path) -> None:
    with running(tmp_path, idle=600) as base, httpx2.Client(timeout=30) as http:
        bob = initialize(http, base, BOB)
        assert bob.status_code == 200
        bob_sid = bob.headers["mcp-session-id"]
        opened = []
        for _ in range(60):  # a bounded flood of initialize calls with a read-only token
            reply = initialize(http, base, ALICE_READER)
            assert reply.status_code == 200, reply.text
            opened.append(reply.headers["mcp-session-id"])
        live = [sid for sid in opened if alive(http, base, ALICE_READER, sid)]
        assert live == opened[-LIMIT:]  # the least recently used ones were closed
        # Another token still gets in, and its session survived the flood; so does one more of its own.
        assert alive(http, base, BOB, bob_sid)
        assert initialize(http, base, ALICE).status_code == 200
        # The same token spelt "bearer" counts as the same credential.
        for _ in range(10):
            reply = http.post(base, json=HELLO, headers={**ACCEPT, "Authorization": f"bearer {ALICE_READER}"})
            assert reply.status_code == 200
        assert sum(alive(http, base, ALICE_READER, sid) for sid in opened) == 0


async def burst(url: str, token: str, count: int) -> list[httpx2.Response]:
    """`count` initialize requests of one token, all in flight at once (one connection each)."""
    replies: list[httpx2.Response] = []
    limits = httpx2.Limits(max_connections=count)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as http:

        async def one() -> None:
            replies.append(await http.post(url, json=HELLO, headers={**ACCEPT, "Authorization": f"Bearer {token}"}))

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    return replies


def test_concurrent_initializes_of_one_credential_never_hold_more_than_its_limit(tmp_path: Path) -> None:
    with running(tmp_path, idle=600) as base, httpx2.Client(timeout=30) as http:
        bob_sid = initialize(http, base, BOB).headers["mcp-session-id"]
        replies = anyio.run(burst, base, ALICE_READER, 60)
        assert {r.status_code for r in replies} <= {200, 503}, [r.text for r in replies if r.status_code != 200]
        opened = [r.headers["mcp-session-id"] for r in replies if r.status_code == 200]
        assert 1 <= sum(alive(http, base, ALICE_READER, sid) for sid in opened) <= LIMIT
        assert alive(http, base, BOB, bob_sid)
        # Every slot the burst took was given back: the token opens sessions one after another again.
        for _ in range(LIMIT + 1):
            assert initialize(http, base, ALICE_READER).status_code == 200


def test_an_initialize_that_opens_no_session_gives_its_slot_back(tmp_path: Path) -> None:
    with running(tmp_path, idle=600) as base, httpx2.Client(timeout=30) as http:
        headers = {**ACCEPT, "Authorization": f"Bearer {ALICE}"}
        for _ in range(LIMIT + 2):
            assert http.post(base, content=b"{not json", headers=headers).status_code == 400
        sids = [initialize(http, base, ALICE).headers["mcp-session-id"] for _ in range(LIMIT)]
        assert all(alive(http, base, ALICE, sid) for sid in sids)


def test_idle_sessions_close_after_the_idle_timeout(tmp_path: Path) -> None:
    with running(tmp_path, idle=IDLE) as base, httpx2.Client(timeout=30) as http:
        assert initialize(http, base, "not-a-token-0123456789").status_code == 401
        sid = initialize(http, base, BOB).headers["mcp-session-id"]
        time.sleep(IDLE / 2)
        assert alive(http, base, BOB, sid)  # a request restarts the idle clock
        time.sleep(IDLE + 1.5)
        assert not alive(http, base, BOB, sid)
