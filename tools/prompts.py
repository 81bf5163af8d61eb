"""The MCP prompt: how an agent should use this memory (the server's `instructions`, longer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, InputRequiredResult

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver.prompts.base import Message

MEMORY_GUIDE = """\
Use the memory tools like this{who}:
- Search first. At the start of a conversation, and before answering anything that may depend on what you
  were told before (preferences, plans, people, facts about the user), call search_memories with a short,
  focused query. Results are best first; a score of {threshold} or more is likely relevant.
- Remember what lasts. When you learn a durable fact, preference, plan, relationship or correction, call
  add_memory with one short sentence that makes sense alone: "Is allergic to peanuts", not "yes, that one".
  Name people, places and dates (absolute, not "tomorrow"); one fact per memory; no small talk, no secrets.
- Correct, do not pile up. If a stored fact changed, update_memory it; if it is no longer true,
  delete_memory it.
- Scope: every call names user_id, agent_id or run_id (combined with AND; the same stable values each
  time), or none when the server has a default user. A memory is only visible within its own scope."""


class StrictPrompt(Prompt):
    """A prompt that refuses unknown arguments by name, as the tools do. (The SDK passes them to the
    function, and answers the validation error that raises with "Error rendering prompt <name>" alone.)"""

    async def render(
        self, arguments: dict[str, Any] | None, context: Context[Any, Any]
    ) -> list[Message] | InputRequiredResult:
        known = [a.name for a in self.arguments or []]
        unknown = sorted(set(arguments or {}) - set(known))
        if unknown:
            its = f"its arguments are: {', '.join(known)}" if known else "it takes none"
            raise MCPError(INVALID_PARAMS, f"{self.name} has no argument {', '.join(unknown)}; {its}.")
        return await super().render(arguments, context)


def register_prompts(server: MCPServer, threshold: float) -> None:
    def memory_guide(user_id: str | None = None) -> str:
        who = f' (user_id="{user_id}")' if user_id else ""
        return MEMORY_GUIDE.format(who=who, threshold=threshold)

    description = "When to search memory before answering; what to remember."
    server.add_prompt(StrictPrompt.from_function(memory_guide, name="memory_guide", description=description))


class StrictPrompts(MCPServer):
    """MCPServer whose prompts/get of an unknown prompt is invalid params (-32602, as the MCP spec
    says) naming the prompts there are; the SDK answers code 0."""

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        known = [p.name for p in await self.list_prompts()]
        if name not in known:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt {name!r}; the prompts are: {', '.join(known)}.")
        return await super().get_prompt(name, arguments, context)
