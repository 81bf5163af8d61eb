"""MCP resources: a scope's memories and a memory's history as text, read through the tools.

Each read runs the matching tool call (list_memories, memory_history) as the calling client, so
the caller's bound scope, validation and sharing apply as for any tool: in a process that does
not own the data dir, the call is forwarded to the one that does. The memories resource is
bounded (its first page); list_memories pages through the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from milvus_memory_mcp.records import Caller

if TYPE_CHECKING:
    from milvus_memory_mcp.sharing import SharedStore

PAGE = 100  # memories in the memories resource


def register_resources(server: MCPServer, caller: Callable[[], Caller], store: SharedStore | None) -> None:
    from milvus_memory_mcp.app import run_forwarded

    async def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        who = caller()

        async def here() -> Any:
            return await run_forwarded(server, name, arguments, who)

        result = await (here() if store is None else store.call(name, arguments, who, here))
        if result.is_error:
            raise ResourceError(" ".join(getattr(c, "text", "") for c in result.content))
        return dict(result.structured_content or {})

    @server.resource(
        "memory://{user_id}/memories",
        name="memories",
        description=f"A user's memories as text, oldest first (the first {PAGE}).",
        mime_type="text/plain",
    )
    async def memories(user_id: str) -> str:
        page = await tool("list_memories", {"user_id": user_id, "limit": PAGE, "verbose": True})
        lines = [f"- {m['memory']} (id {m['id']}, updated {m['updated_at']})" for m in page["results"]]
        if page.get("next_cursor"):
            lines.append(f"More memories: call list_memories with cursor {page['next_cursor']}.")
        return "\n".join(lines) if lines else f"No memories of user_id={user_id!r}."

    @server.resource(
        "memory://memories/{memory_id}/history",
        name="memory_history",
        description="One memory's history as text, oldest first.",
        mime_type="text/plain",
    )
    async def history(memory_id: str) -> str:
        events = (await tool("memory_history", {"memory_id": memory_id, "verbose": True}))["events"]
        lines = []
        for e in events:
            text = e.get("new_memory") if e["event"] != "DELETE" else e.get("old_memory")
            by = f" by {e['actor']}" if e.get("actor") else ""
            lines.append(f"{e['updated_at']} {e['event']}{by}: {text or ''} (event {e['id']})")
        return "\n".join(lines)
