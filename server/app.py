"""MCPServer wiring: the server object, its tools, who is calling, and the transports."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolRequestParams, CallToolResult
from pydantic import AnyHttpUrl, ValidationError

from milvus_memory_mcp import __version__
from milvus_memory_mcp.auth import StaticTokenVerifier, caller_for, load_tokens
from milvus_memory_mcp.embedders import Embedder, make_embedder
from milvus_memory_mcp.records import ANONYMOUS, SCOPE_FIELDS, Caller
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.sharing import SharedStore, error_result

logger = logging.getLogger(__name__)
call_log = logging.getLogger("milvus_memory_mcp.calls")

INSTRUCTIONS = (
    "Long-term memory. Before answering anything that may depend on earlier conversations, call "
    "search_memories; when you learn a durable fact, preference or plan, add_memory it as one short, "
    "self-contained sentence. Name the same user_id (or agent_id / run_id) every time. "
    "The memory_guide prompt says more."
)

CallerProvider = Callable[[], Caller]
# The caller of a tool call that another process forwarded to this one (the owner of the store).
FORWARDED_CALLER: ContextVar[Caller | None] = ContextVar("forwarded_caller", default=None)


def caller_provider(default_user_id: str | None) -> CallerProvider:
    """Who is calling, per tool call: a forwarded caller, else the HTTP token's grant, else this process."""
    local = Caller(default_user_id=default_user_id)

    def current() -> Caller:
        forwarded = FORWARDED_CALLER.get()
        if forwarded is not None:
            return forwarded
        token = get_access_token()
        if token is not None:
            return caller_for(token, default_user_id)
        return local

    return current


@contextmanager
def _rich_import_blocked() -> Iterator[None]:
    """MCPServer's constructor imports rich (~45 ms before the handshake) for a log handler that
    `logging.basicConfig` then ignores, our logging being set up already: let its fallback run."""
    if "rich.console" in sys.modules:
        yield
        return
    sys.modules["rich.console"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("rich.console", 0) is None:
            del sys.modules["rich.console"]


def build_server(
    service: MemoryService,
    caller: CallerProvider | None = None,
    *,
    store: SharedStore | None = None,
    token_verifier: StaticTokenVerifier | None = None,
) -> MCPServer:
    """An MCPServer with every memory tool bound to `service` (one core shared by all sessions).

    With `store`, tool calls run in whichever process owns the data dir (server/sharing.py).
    With `token_verifier`, HTTP requests need a bearer token and its grant binds the caller.
    """
    from milvus_memory_mcp.resources import register_resources
    from milvus_memory_mcp.tools import register
    from milvus_memory_mcp.tools.prompts import StrictPrompts

    # Static tokens: no OAuth server; the issuer URL is required by the SDK but never published.
    auth = AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1"), resource_server_url=None) if token_verifier else None
    with _rich_import_blocked():
        server: MCPServer = StrictPrompts(
            "milvus-memory-mcp",
            instructions=INSTRUCTIONS,
            version=__version__,
            log_level=service.settings.log_level,
            auth=auth,
            token_verifier=token_verifier,
        )
    current = caller or (lambda: ANONYMOUS)
    register(server, service, current)
    register_resources(server, current, store)
    server.middleware.append(_log_tool_calls(current, store))
    if store is not None:
        server.middleware.append(_forward_tool_calls(store, current))

    async def warm_up_after_handshake(ctx: Any, call_next: Any) -> Any:
        # Open Milvus and the model only once the client has its handshake answer.
        result = await call_next(ctx)
        if ctx.method != "initialize":
            if store is not None:
                store.start()
            else:
                service.warm_up()
        return result

    server.middleware.append(warm_up_after_handshake)
    return server


def _is_error(result: Any) -> bool:
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return bool(getattr(result, "is_error", False))


def _log_tool_calls(caller: CallerProvider, store: SharedStore | None) -> Any:
    """One structured stderr line per tool call: tool, scope, duration, outcome (no text, no token)."""

    async def middleware(ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params: Mapping[str, Any] = ctx.params if isinstance(ctx.params, Mapping) else {}
        raw_arguments = params.get("arguments")
        arguments: Mapping[str, Any] = raw_arguments if isinstance(raw_arguments, Mapping) else {}
        start = time.perf_counter()
        outcome = "failed"
        try:
            result = await call_next(ctx)
            outcome = "error" if _is_error(result) else "ok"
            return result
        finally:
            who = caller()
            scope = {k: str(arguments[k])[:128] for k in SCOPE_FIELDS if isinstance(arguments.get(k), str)}
            scope.update(who.bound.items() if who.bound else ())
            if not scope and who.default_user_id:
                scope = {"user_id": who.default_user_id}
            line = {
                "event": "tool_call",
                "tool": str(params.get("name"))[:64],
                "scope": scope,
                "actor": who.actor,
                "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                "outcome": outcome,
            }
            if store is not None:
                line["store"] = "owner" if store.is_owner else "forwarded"
            call_log.info(json.dumps(line, ensure_ascii=False))

    return middleware


def _forward_tool_calls(store: SharedStore, caller: CallerProvider) -> Any:
    async def middleware(ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or store.is_owner:
            return await call_next(ctx)
        try:
            params = CallToolRequestParams.model_validate(ctx.params or {})
        except ValidationError:
            return await call_next(ctx)  # the SDK refuses it before any tool runs
        return await store.call(params.name, params.arguments or {}, caller(), lambda: call_next(ctx))

    return middleware


async def run_forwarded(server: MCPServer, name: str, arguments: dict[str, Any], caller: Caller) -> CallToolResult:
    """Run a tool call forwarded by another process, as that process's caller."""
    token = FORWARDED_CALLER.set(caller)
    try:
        result = await server.call_tool(name, arguments)
    except ToolError as e:
        if isinstance(e, UnexpectedToolError):
            logger.error("forwarded tool %r raised an unexpected exception", name, exc_info=e.__cause__)
        return error_result(str(e))
    finally:
        FORWARDED_CALLER.reset(token)
    if not isinstance(result, CallToolResult):
        return error_result(f"Tool {name!r} needs input this server cannot ask for.")
    return result


async def serve(settings: Settings, embedder: Embedder | None = None) -> None:
    """Serve until the transport ends; `embedder` may have been started already (see __main__)."""
    verifier = None
    if settings.transport != "stdio":
        from milvus_memory_mcp.http import check_http_settings

        check_http_settings(settings)
        if settings.auth_tokens is not None:
            verifier = StaticTokenVerifier(load_tokens(settings.auth_tokens), settings.auth_tokens)
    elif settings.auth_tokens is not None:
        logger.warning("MEMORY_AUTH_TOKENS applies to the HTTP transports only; stdio has no tokens")
    # The default user travels with each call (Caller.default_user_id), so that the owner of the
    # store applies the calling process's MEMORY_USER_ID, never its own.
    embedder = embedder or make_embedder(settings)
    service = MemoryService(settings.model_copy(update={"user_id": None}), embedder=embedder)
    current = caller_provider(settings.user_id)

    async def run_tool(name: str, arguments: dict[str, Any], caller: Caller) -> CallToolResult:
        return await run_forwarded(server, name, arguments, caller)

    store = SharedStore(settings, service, run_tool)
    server = build_server(service, current, store=store, token_verifier=verifier)
    # The lifespan: each resource is opened once, in order, and closed once, in reverse, however the
    # transport ends (stdin closed, or SIGTERM / SIGINT: an orderly stop, queued writes flushed).
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_shielded(embedder.close))  # last: the model
        stack.callback(store.release)  # then the ownership lock, once the store is closed
        await stack.enter_async_context(service)  # the stores (opened at warm-up), flushed and closed
        await stack.enter_async_context(store)  # stop serving other processes
        tg = await stack.enter_async_context(anyio.create_task_group())  # first to close: the signal watch
        if settings.transport == "stdio":
            from milvus_memory_mcp.stdio import run_stdio

            tg.start_soon(_stop_on_signals, tg.cancel_scope.cancel, None)
            await run_stdio(server)
        else:
            from milvus_memory_mcp.http import serve_http

            stop = anyio.Event()
            tg.start_soon(_stop_on_signals, stop.set, tg.cancel_scope.cancel)
            store.start()
            await serve_http(server, store, settings, stop, verifier)
        tg.cancel_scope.cancel()


def _shielded(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        with anyio.CancelScope(shield=True):
            await close()

    return run


async def _stop_on_signals(stop: Callable[[], None], force: Callable[[], None] | None) -> None:
    """SIGTERM or SIGINT: `stop`; with `force` (HTTP), `stop` lets the requests in flight finish
    and a second signal calls `force`."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if force is None:
                logger.info("%s: stopping (queued writes are flushed first)", name)
            else:
                logger.info("%s: stopping after the requests in flight (again to stop now)", name)
            stop()
            stop, force = force or stop, None


__all__ = ["build_server", "serve", "Caller", "INSTRUCTIONS"]
