"""`milvus-memory-mcp ui`: the dashboard alone, on 127.0.0.1, with the lifespan of a server process.

The store is shared as by `serve` (server/sharing.py): this process owns the data dir if no other
does, else its tool calls go to the owner. Without --auth-tokens it prints a login token for this run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import anyio

from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.records import Caller
from milvus_memory_mcp.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765


async def run_ui(settings: Settings, embedder: Embedder) -> None:
    from milvus_memory_mcp.app import _shielded, _stop_on_signals, build_server, caller_provider, run_forwarded
    from milvus_memory_mcp.auth import StaticTokenVerifier, load_tokens
    from milvus_memory_mcp.service import MemoryService
    from milvus_memory_mcp.sharing import SharedStore
    from milvus_memory_mcp.ui import dashboard_app

    verifier = None
    if settings.auth_tokens is not None:
        verifier = StaticTokenVerifier(load_tokens(settings.auth_tokens), settings.auth_tokens)
    service = MemoryService(settings.model_copy(update={"user_id": None}), embedder=embedder)

    async def run_tool(name: str, arguments: dict[str, Any], caller: Caller) -> Any:
        return await run_forwarded(server, name, arguments, caller)

    store = SharedStore(settings, service, run_tool)
    server = build_server(service, caller_provider(settings.user_id), store=store)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_shielded(embedder.close))
        stack.callback(store.release)
        await stack.enter_async_context(service)
        await stack.enter_async_context(store)
        tg = await stack.enter_async_context(anyio.create_task_group())
        stop = anyio.Event()
        tg.start_soon(_stop_on_signals, stop.set, tg.cancel_scope.cancel)
        store.start()
        await _serve(dashboard_app(server, store, settings, verifier), settings, stop)
        tg.cancel_scope.cancel()


async def _serve(app: Any, settings: Settings, stop: anyio.Event) -> None:
    import uvicorn

    from milvus_memory_mcp.http import RequestLog, _bind, serve_until

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # run_ui watches SIGTERM / SIGINT (see server/http.py)

    config = uvicorn.Config(
        RequestLog(app), log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    sock = _bind("127.0.0.1", settings.port)
    port = sock.getsockname()[1]
    print(f"dashboard on http://127.0.0.1:{port}/ui/", file=sys.stderr, flush=True)  # whatever the log level
    await serve_until(Server(config), sock, stop)
