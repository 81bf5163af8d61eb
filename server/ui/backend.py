"""What the dashboard asks of the store: the tools themselves, as the logged-in token's caller.

Every read and write is a tool call (list_memories, search_memories, get_memory, memory_history,
update_memory, delete_memory, restore_memory) run the way `SharedStore` runs any call: here when
this process owns the data dir, else in the process that does. So validation, scope checks,
read-only refusals, history and the write protocol are the tools' own. `stats` and `activity` (the
charts, server/core/dashboard.py) are owner operations, run where the store is owned like a call.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from milvus_memory_mcp.core.dashboard import Activity, from_json
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.sharing import SharedStore, error_text

VERBOSE = frozenset({"search_memories", "get_memory", "list_memories", "memory_history"})


class Refused(Exception):
    """A tool call's error: its message is shown to the user as it is."""


class Backend:
    def __init__(self, server: MCPServer, store: SharedStore) -> None:
        self.server = server
        self.store = store

    async def call(self, tool: str, caller: Caller, **arguments: Any) -> dict[str, Any]:
        from milvus_memory_mcp.app import run_forwarded

        args = {k: v for k, v in arguments.items() if v is not None}
        if tool in VERBOSE:
            args["verbose"] = True

        async def run_here() -> CallToolResult:
            return await run_forwarded(self.server, tool, args, caller)

        result = await self.store.call(tool, args, caller, run_here)
        if result.is_error:
            raise Refused(error_text(tool, result))
        return dict(result.structured_content or {})

    async def stats(self, caller: Caller) -> dict[str, Any]:
        """The owner's stats, its scope list cut to what the caller may see."""
        stats = dict(await self.store.run_op("stats"))
        if caller.bound is not None:
            bound = caller.bound
            stats["scopes"] = [s for s in stats["scopes"] if all(s.get(k) == v for k, v in bound.items())]
            stats["memories"] = sum(s["live"] for s in stats["scopes"])
            stats["deleted"] = sum(s["deleted"] for s in stats["scopes"])
            for private in ("data_dir", "events", "pending_writes"):
                stats.pop(private, None)
        return stats

    async def activity(self, caller: Caller, scope: Scope, days: int) -> Activity:
        """Writes per day per scope within what the caller may see, from the process owning the store."""
        merged = dict(scope.items())
        if caller.bound is not None:
            merged.update(caller.bound.items())
        return from_json(await self.store.run_op("activity", scope=merged, days=days))
