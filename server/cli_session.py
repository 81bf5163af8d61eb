"""The owner's CLI session: the same core and sharing rules as a server process.

A CLI command runs its tool calls through an in-memory MCP client on the same MCPServer a
server process builds, with a `SharedStore`: when another process (a running server) owns the
data dir, each call is forwarded to it; otherwise this process owns the store for the command's
duration (and serves other processes meanwhile, like any owner). The caller is the owner: no
bound scope, writes allowed, actor "cli", the default user from MEMORY_USER_ID.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from milvus_memory_mcp.records import Caller
from milvus_memory_mcp.settings import Settings

ACTOR = "cli"
VERBOSE_TOOLS = frozenset({"search_memories", "get_memory", "list_memories", "memory_history"})


class CommandFailed(Exception):
    """A tool call answered with an error: its message is what the user reads."""


class Session:
    def __init__(self, client: Any, store: Any) -> None:
        self._client = client
        self._store = store

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A tool's structured result, every field (`verbose` where the tool has it); CommandFailed
        with its message when it fails."""
        if tool in VERBOSE_TOOLS:
            arguments["verbose"] = True
        result = await self._client.call_tool(tool, {k: v for k, v in arguments.items() if v is not None})
        if result.is_error:
            from milvus_memory_mcp.sharing import error_text

            raise CommandFailed(error_text(tool, result))
        return dict(result.structured_content or {})

    @property
    def settings(self) -> Settings:
        return self._store.settings

    async def stats(self) -> dict[str, Any]:
        return dict(await self._store.run_op("stats"))

    async def import_batch(self, lines: list[Any], on_conflict: str, embedder: str | None) -> dict[str, Any]:
        result = await self._store.run_op("import", lines=lines, on_conflict=on_conflict, embedder=embedder)
        return dict(result)

    async def reembed_step(self, embedder: str, dimensions: int | None, limit: int) -> dict[str, Any]:
        return dict(await self._store.run_op("reembed_step", embedder=embedder, dimensions=dimensions, limit=limit))


@asynccontextmanager
async def session(settings: Settings) -> AsyncIterator[Session]:
    from mcp import Client

    from milvus_memory_mcp.app import FORWARDED_CALLER, build_server, run_forwarded
    from milvus_memory_mcp.embedders import make_embedder
    from milvus_memory_mcp.service import MemoryService
    from milvus_memory_mcp.sharing import SharedStore

    embedder = make_embedder(settings)
    # As in `serve`: the default user travels with each call, so an owner applies ours.
    service = MemoryService(settings.model_copy(update={"user_id": None}), embedder=embedder)
    local = Caller(actor=ACTOR, default_user_id=settings.user_id)

    def current() -> Caller:
        return FORWARDED_CALLER.get() or local

    async def run_tool(name: str, arguments: dict[str, Any], caller: Caller) -> Any:
        return await run_forwarded(server, name, arguments, caller)

    store = SharedStore(settings, service, run_tool)
    server = build_server(service, current, store=store)
    async with AsyncExitStack() as stack:

        async def close_embedder() -> None:
            with anyio.CancelScope(shield=True):
                await embedder.close()

        stack.push_async_callback(close_embedder)
        stack.callback(store.release)
        await stack.enter_async_context(service)
        await stack.enter_async_context(store)
        client = await stack.enter_async_context(Client(server))
        yield Session(client, store)
