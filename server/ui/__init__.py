"""The web dashboard at /ui: see, search, correct and audit the memories (issue 21).

Served by the HTTP transports' process beside /mcp or /sse (`with_dashboard`, server/http.py), or
alone by `milvus-memory-mcp ui` (server/ui/command.py). Parts: backend.py (the tools, run as the
logged-in token), session.py (login, cookies, CSRF, Host / Origin checks), routes.py (pages),
views.py (diffs, timelines, as_of), charts.py (SVG), templates/ (Jinja2, autoescaped), static/
(CSS and htmx, packaged: nothing from a CDN).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from milvus_memory_mcp.auth import StaticTokenVerifier
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.sharing import SharedStore

HERE = Path(__file__).resolve().parent
PREFIX = "/ui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# Request bodies are refused (413) beyond these, before they are read. The largest form is a memory's
# edit: its text (MEMORY_MAX_MEMORY_BYTES, at most 65535 bytes) and metadata (16384 bytes as compact
# JSON, more as typed), up to three times that URL-encoded: 1 MiB leaves room. A login (nonce, token,
# next page) needs far less.
FORM_BODY_LIMIT = 1024 * 1024
LOGIN_BODY_LIMIT = 16 * 1024


class BodyLimit:
    """Refuse a request body over its path's limit with 413: by Content-Length before reading any of
    it, else (chunked) while counting what arrives; the body is read at most to the limit and handed
    on whole. The rest of a refused body is discarded by the server as it arrives, never kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LOGIN_BODY_LIMIT if scope["path"] == PREFIX + "/login" else FORM_BODY_LIMIT
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(limit)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _too_large(limit: int) -> Response:
    return PlainTextResponse(f"Request body too large: the dashboard accepts at most {limit} bytes here.", 413)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first gives back what was already read."""

    async def again() -> Message:
        return messages.pop(0) if messages else await receive()

    return again


class Guard:
    """Every dashboard response: the Host checked (DNS rebinding), security headers added."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from milvus_memory_mcp.ui.session import host_allowed

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if not host_allowed(host, self.allowed):
            await PlainTextResponse("Invalid Host header", 421)(scope, receive, send)
            return
        static = scope["path"].startswith(PREFIX + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts say Origin: null
                    (b"cache-control", b"public, max-age=86400" if static else b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def dashboard_app(
    server: MCPServer, store: SharedStore, settings: Settings, verifier: StaticTokenVerifier | None
) -> ASGIApp:
    """The dashboard as an ASGI app answering paths under /ui. Without a token file, this process
    makes a login token for this run and prints it (stderr): loopback is no boundary between a
    machine's accounts, and the store is private to its owner."""
    from milvus_memory_mcp.http import transport_security
    from milvus_memory_mcp.ui.backend import Backend
    from milvus_memory_mcp.ui.routes import Pages
    from milvus_memory_mcp.ui.session import Sessions, token_check

    run_token = None if verifier is not None else secrets.token_urlsafe(24)
    if run_token is not None:
        # Printed, not logged: it must reach the operator whatever MEMORY_LOG_LEVEL says (stderr: never the protocol).
        print(f"dashboard login token for this run (no --auth-tokens): {run_token}", file=sys.stderr, flush=True)
    hint = "a bearer token from the server's token file" if verifier else "the login token this run printed on stderr"
    sessions = Sessions(token_check(verifier, run_token, settings.user_id))
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    pages = Pages(Backend(server, store), sessions, env, hint)

    async def home(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/memories", 303)

    routes = [
        Route(PREFIX, home),
        Route(PREFIX + "/", home),
        Route(PREFIX + "/login", pages.login_form, methods=["GET"]),
        Route(PREFIX + "/login", pages.login, methods=["POST"]),
        Route(PREFIX + "/logout", pages.logout, methods=["POST"]),
        Route(PREFIX + "/memories", pages.memories, methods=["GET"]),
        Route(PREFIX + "/search", pages.search, methods=["GET"]),
        Route(PREFIX + "/memory/{memory_id}", pages.memory, methods=["GET"]),
        Route(PREFIX + "/memory/{memory_id}/edit", pages.edit, methods=["POST"]),
        Route(PREFIX + "/memory/{memory_id}/delete", pages.delete, methods=["POST"]),
        Route(PREFIX + "/memory/{memory_id}/restore", pages.restore, methods=["POST"]),
        Route(PREFIX + "/stats", pages.stats, methods=["GET"]),
        # Static files compressed; pages not (they hold CSRF tokens beside reflected input: BREACH).
        Mount(PREFIX + "/static", GZipMiddleware(StaticFiles(directory=HERE / "static")), name="static"),
    ]
    allowed = transport_security(settings).allowed_hosts
    return Starlette(routes=routes, middleware=[Middleware(Guard, allowed_hosts=allowed), Middleware(BodyLimit)])


class WithDashboard:
    """Paths under /ui to the dashboard, everything else (and the lifespan) to the MCP app."""

    def __init__(self, mcp: ASGIApp, dashboard: ASGIApp) -> None:
        self.mcp = mcp
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.dashboard(scope, receive, send)
        else:
            await self.mcp(scope, receive, send)
