"""The HTTP transports (SSE, streamable HTTP): safety checks, /health, request logs, uvicorn."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from milvus_memory_mcp.auth import StaticTokenVerifier
from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.sessions import SessionLimit, StatusNote
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.sharing import SharedStore

logger = logging.getLogger(__name__)
request_log = logging.getLogger("milvus_memory_mcp.requests")

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
WILDCARD = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_http_settings(settings: Settings) -> None:
    """Refuse set-ups that would expose memories: no auth off loopback, no unnamed public hosts."""
    if is_loopback(settings.host):
        return
    if settings.auth_tokens is None and not settings.allow_unauthenticated:
        raise ConfigurationError(
            f"Refusing to serve {settings.host} without authentication: anyone who reaches it could read every "
            "user's memories. Give --auth-tokens FILE (MEMORY_AUTH_TOKENS), or --allow-unauthenticated if "
            "something in front of this server authenticates callers."
        )
    if settings.host in WILDCARD and not settings.allowed_hosts:
        raise ConfigurationError(
            f"--host {settings.host} listens on every interface: name the Host values clients will use with "
            "--allowed-hosts (MEMORY_ALLOWED_HOSTS), e.g. 'memory.example.com:8000'. DNS-rebinding protection "
            "stays on."
        )
    logger.warning("serving plain HTTP on %s: put a TLS-terminating proxy in front of it", settings.host)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection, always on: loopback names, the bind host, and the configured extras."""
    hosts, origins = list(LOOPBACK_HOSTS), list(LOOPBACK_ORIGINS)
    if settings.host not in WILDCARD and not is_loopback(settings.host):
        name = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts.append(f"{name}:*")
        origins += [f"http://{name}:*", f"https://{name}:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + settings.allowed_hosts,
        allowed_origins=origins + settings.allowed_origins,
    )


class RequestLog:
    """ASGI middleware: one structured stderr line per HTTP request (no headers, no query, no body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        noted = StatusNote(send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, noted)
        finally:
            user = scope.get("user")
            line = {
                "event": "http",
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": noted.status or None,
                "principal": user.access_token.client_id if isinstance(user, AuthenticatedUser) else None,
                "duration_ms": round((time.perf_counter() - start) * 1000, 1),
            }
            request_log.info(json.dumps(line, ensure_ascii=False))


def add_health_route(server: MCPServer, store: SharedStore) -> None:
    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        """Store readiness, without authentication (it reveals no memory)."""
        state = await store.status()
        return JSONResponse({"status": "ok" if state["ready"] else "starting", **state}, 200 if state["ready"] else 503)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock


async def serve_until(http: Any, sock: socket.socket, stop: anyio.Event) -> None:
    """Run the uvicorn server `http` on `sock` until `stop` is set (a graceful shutdown), then close `sock`."""

    async def stop_when_asked() -> None:
        await stop.wait()
        http.should_exit = True

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_asked)
            await http.serve(sockets=[sock])
            tg.cancel_scope.cancel()
    finally:
        sock.close()


async def serve_http(
    server: MCPServer,
    store: SharedStore,
    settings: Settings,
    stop: anyio.Event,
    verifier: StaticTokenVerifier | None = None,
) -> None:
    """Serve until `stop` is set (then finish the requests in flight, 5 s at most); the dashboard at /ui."""
    import uvicorn

    from milvus_memory_mcp.ui import WithDashboard, dashboard_app

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # app.serve handles SIGTERM / SIGINT (uvicorn would re-raise them once stopped, and the
            # process would die before flushing its store).
            yield

    add_health_route(server, store)
    security = transport_security(settings)
    app: Any
    if settings.transport == "sse":
        app, path = server.sse_app(transport_security=security, host=settings.host), "/sse"
    else:
        path = "/mcp"
        app = server.streamable_http_app(
            transport_security=security,
            host=settings.host,
            session_idle_timeout=settings.session_idle_timeout,
            max_sessions=None,  # bounded per credential instead: one caller cannot lock out the others
            stateless_http=settings.stateless_http,
        )
        if not settings.stateless_http:
            app = SessionLimit(app, path, settings.max_sessions_per_credential, settings.session_idle_timeout)
    app = WithDashboard(app, dashboard_app(server, store, settings, verifier))
    config = uvicorn.Config(
        RequestLog(app),
        log_config=None,  # our stderr logging; uvicorn's default config writes access lines to stdout
        access_log=False,  # RequestLog writes one line per request instead
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info("listening on http://%s:%d%s (health: /health, dashboard: /ui)", shown, port, path)
    await serve_until(Server(config), sock, stop)
