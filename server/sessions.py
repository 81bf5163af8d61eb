"""Streamable HTTP sessions: a bounded number per credential, so no caller can lock out another.

The SDK's session manager has one global cap (10,000 open sessions, 503 for everyone beyond it)
and closes a session after 30 idle minutes: one token, even a read-only one, could open 10,000
sessions with `initialize` and lock every other user out for half an hour. This ASGI middleware,
in front of the MCP endpoint, counts the sessions each credential opened (its bearer token;
without tokens, the client address) and keeps at most `per_credential`: opening one more first
closes that credential's least recently used idle session, through the protocol's own DELETE
with the same credential; when all of them have a request in flight (an open stream), the new
one is refused with 503 for that credential only. The SDK's global cap is lifted (the sum of
per-credential caps bounds the table) and its idle timeout shortened (MEMORY_SESSION_IDLE_TIMEOUT).
A new session's slot is taken before the SDK is asked to open it (given back if it opens none), so
concurrent `initialize` calls count like sequential ones: beyond the cap while all are busy, 503.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SESSION_HEADER = b"mcp-session-id"


class StatusNote:
    """Wraps an ASGI `send`, noting the response status it passes on (0 until it starts)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


@dataclass
class _Session:
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", ()) if k.lower() == name), None)


def _credential(scope: Scope) -> str:
    """Whose session this is: the bearer token as the SDK reads it (hashed), else the client address."""
    auth = (_header(scope, b"authorization") or b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return "token:" + hashlib.sha256(auth[7:].encode("utf-8", "replace")).hexdigest()
    client = scope.get("client")
    return f"address:{client[0] if client else '?'}"


class SessionLimit:
    def __init__(self, app: ASGIApp, path: str, per_credential: int, idle_timeout: float) -> None:
        self.app = app
        self.path = path
        self.per_credential = per_credential
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, dict[str, _Session]] = {}  # credential -> session id -> state
        self._opening: dict[str, int] = {}  # credential -> sessions being opened (the SDK not done yet)

    def open_sessions(self, credential: str) -> int:
        self._forget_expired(credential)
        return len(self._sessions.get(credential, {}))

    def _forget_expired(self, credential: str) -> None:
        """Drop sessions the SDK has closed for idleness (no request in flight for the idle timeout)."""
        sessions = self._sessions.get(credential, {})
        cutoff = time.monotonic() - self.idle_timeout
        for sid in [sid for sid, s in sessions.items() if not s.in_flight and s.last_used < cutoff]:
            del sessions[sid]
        if not sessions:
            self._sessions.pop(credential, None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        credential = _credential(scope)
        sid = (_header(scope, SESSION_HEADER) or b"").decode("latin-1")
        if not sid:
            if scope.get("method") == "POST":
                await self._open(scope, receive, send, credential)
            else:
                await self.app(scope, receive, send)
            return
        sessions = self._sessions.get(credential, {})
        state = sessions.get(sid)
        if state is None:  # unknown here: the SDK answers (404, or another credential's session)
            await self.app(scope, receive, send)
            return
        state.in_flight += 1
        watch = StatusNote(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            state.in_flight -= 1
            state.last_used = time.monotonic()
            status = watch.status
            if status == 404 or (scope.get("method") == "DELETE" and 200 <= status < 300):
                sessions.pop(sid, None)
                if not sessions:
                    self._sessions.pop(credential, None)

    async def _open(self, scope: Scope, receive: Receive, send: Send, credential: str) -> None:
        if not await self._reserve(scope, send, credential):
            return
        new_sid = ""

        async def note_session(message: Message) -> None:
            nonlocal new_sid
            if message["type"] == "http.response.start" and message["status"] < 400:
                new_sid = (_header(message, SESSION_HEADER) or b"").decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, note_session)
        finally:
            self._release(credential)
            if new_sid:  # recorded only once the SDK opened it: a wrong token (401) leaves nothing here
                self._sessions.setdefault(credential, {})[new_sid] = _Session()

    async def _reserve(self, scope: Scope, send: Send, credential: str) -> bool:
        """A slot for one new session, taken before the SDK is awaited, so concurrent `initialize`
        calls cannot all pass the count: it counts as a busy session until the SDK has answered.
        False: refused (503 sent), every session of the credential busy or being opened."""
        while True:
            self._forget_expired(credential)
            sessions = self._sessions.get(credential, {})
            opening = self._opening.get(credential, 0)
            if len(sessions) + opening < self.per_credential:
                self._opening[credential] = opening + 1
                return True
            idle = [(s.last_used, sid) for sid, s in sessions.items() if not s.in_flight]
            if not idle:
                busy = len(sessions) + opening
                logger.warning("refusing a new session: %d sessions of one credential are busy", busy)
                await _refuse(send, self.per_credential)
                return False
            _, victim = min(idle)
            del sessions[victim]
            await self._close(scope, victim)  # others may open or close meanwhile: counted again

    def _release(self, credential: str) -> None:
        left = self._opening.pop(credential, 0) - 1
        if left > 0:
            self._opening[credential] = left

    async def _close(self, scope: Scope, sid: str) -> None:
        """End one session through the MCP endpoint itself: DELETE with the caller's credential."""
        keep = (b"host", b"origin", b"authorization", b"mcp-protocol-version")
        headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() in keep]
        headers.append((SESSION_HEADER, sid.encode("latin-1")))
        delete = {**scope, "method": "DELETE", "headers": headers, "query_string": b""}
        status = 0
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(delete, receive, send)
        logger.info("closed the least recently used idle session of a credential at its limit (%d)", status)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32603,
                "message": f"Too many open sessions for this credential ({limit}, all busy); close one or retry later.",
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
