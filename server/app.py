"""MCPServer wiring: the server object, its tools, and the transports."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import MCPServer

from . import __version__
from .records import ANONYMOUS, Caller
from .service import MemoryService
from .settings import Settings

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Long-term memory across conversations: call search_memories before answering anything that may depend on "
    "what you were told before, and add_memory when you learn a durable fact, preference or plan, stored as one "
    "short, self-contained sentence. "
    "Scope: every call says whose memory it is with user_id, agent_id or run_id (at least one, combined with AND, "
    "the same stable values each time), and may leave them out only when the server has a default user. A memory "
    "is only ever visible within its own scope: a search or list never returns another user's, agent's or run's "
    "memories."
)


def build_server(service: MemoryService, caller: Any = None) -> MCPServer:
    """An MCPServer with every memory tool bound to `service` (one core shared by all sessions)."""
    from tools import register

    server: MCPServer = MCPServer(
        "milvus-memory-mcp",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=service.settings.log_level,
    )
    register(server, service, caller or (lambda: ANONYMOUS))

    async def warm_up_after_handshake(ctx: Any, call_next: Any) -> Any:
        # Open Milvus and the model only once the client has its handshake answer.
        result = await call_next(ctx)
        if ctx.method != "initialize":
            service.warm_up()
        return result

    server.middleware.append(warm_up_after_handshake)
    return server


async def serve(settings: Settings) -> None:
    async with MemoryService(settings) as service:
        server = build_server(service)
        if settings.transport == "stdio":
            await server.run_stdio_async()
        elif settings.transport == "sse":
            await server.run_sse_async(host=settings.host, port=settings.port)
        else:
            await server.run_streamable_http_async(host=settings.host, port=settings.port)


__all__ = ["build_server", "serve", "Caller", "INSTRUCTIONS"]
