"""MCP resources: a scope's memories and a memory's history as text, read through the tools.

Each read runs the matching tool call (list_memories, memory_history) as the calling client, so
the caller's bound scope, validation and sharing apply as for any tool: in a process that does
not own the data dir, the call is forwarded to the one that does. The memories resource is
bounded (its first page); list_memories pages through the rest. Each memory or event is one line:
control characters in stored values (a newline too) are shown escaped (terminal.one_line), so no
stored text can pass for another line; the tools' JSON has the exact values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import Caller
from milvus_memory_mcp.terminal import one_line
from milvus_memory_mcp.validation import check_memory_id, check_scope

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

    def checked(check: Callable[[], object]) -> None:
        """A URI's value checked as the tool checks it: a client's mistake is invalid params (-32602)."""
        try:
            check()
        except InvalidInput as e:
            raise MCPError(INVALID_PARAMS, str(e)) from None

    @server.resource(
        "memory://{user_id}/memories",
        name="memories",
        description=f"A user's memories as text, oldest first (the first {PAGE}).",
        mime_type="text/plain",
    )
    async def memories(user_id: str) -> str:
        checked(lambda: check_scope(user_id))
        page = await tool("list_memories", {"user_id": user_id, "limit": PAGE, "verbose": True})
        lines = [
            f"- {one_line(m['memory'])} (id {one_line(m['id'])}, updated {one_line(m['updated_at'])})"
            for m in page["results"]
        ]
        if page.get("next_cursor"):
            lines.append(f"More memories: call list_memories with cursor {one_line(page['next_cursor'])}.")
        return "\n".join(lines) if lines else f"No memories of user_id={user_id!r}."

    @server.resource(
        "memory://memories/{memory_id}/history",
        name="memory_history",
        description="One memory's history as text, oldest first.",
        mime_type="text/plain",
    )
    async def history(memory_id: str) -> str:
        checked(lambda: check_memory_id(memory_id))
        events = (await tool("memory_history", {"memory_id": memory_id, "verbose": True}))["events"]
        lines = []
        for e in events:
            text = e.get("new_memory") if e["event"] != "DELETE" else e.get("old_memory")
            by = f" by {one_line(e['actor'])}" if e.get("actor") else ""
            fields = (one_line(e["updated_at"]), one_line(e["event"]), one_line(text or ""), one_line(e["id"]))
            lines.append(f"{fields[0]} {fields[1]}{by}: {fields[2]} (event {fields[3]})")
        return "\n".join(lines)
