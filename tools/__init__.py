"""The MCP tools: thin, typed wrappers over `MemoryService`.

Each tool validates nothing itself and touches no store: it forwards to the core and turns the
core's errors into `ToolError`, whose message is all the agent sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from server.errors import MemoryServiceError
from server.models import (
    AddResult,
    DeleteAllResult,
    DeleteResult,
    HistoryResult,
    ListResult,
    MemoryItem,
    SearchResult,
)
from server.records import ANONYMOUS, Caller, Scope
from server.service import MemoryService

CallerProvider = Callable[[], Caller]


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "system"] = Field(description="Who said it.")
    content: str = Field(description="What was said.")


UserId = Annotated[
    str | None,
    Field(
        description='The user the memory is about, e.g. "alice". Name at least one of user_id, agent_id, run_id '
        "unless the server has a default user."
    ),
]
AgentId = Annotated[str | None, Field(description='The agent the memory belongs to, e.g. "travel-planner".')]
RunId = Annotated[str | None, Field(description='A single conversation or task run, e.g. "session-42".')]
MemoryId = Annotated[str, Field(description="The memory's id (a UUID from add_memory, search or list).")]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description="Equality conditions on metadata keys or scope fields, all of which must hold, "
        'e.g. {"category": "hobbies"}.',
    ),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description='JSON object stored with the memory, e.g. {"category": "hobbies"}. Keys: letters, digits, _ -.'),
]

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


@contextmanager
def agent_errors() -> Iterator[None]:
    """Turn the core's errors into ToolError, the only kind whose message reaches the agent."""
    try:
        yield
    except MemoryServiceError as e:
        raise ToolError(str(e)) from e


def register(server: MCPServer, service: MemoryService, caller: CallerProvider = lambda: ANONYMOUS) -> None:
    """Register every memory tool on `server`, bound to `service`."""

    @server.tool(annotations=WRITE)
    async def add_memory(
        messages: Annotated[
            str | list[ChatMessage],
            Field(
                description='A short, self-contained fact to remember ("Prefers window seats on flights"), '
                "or a list of {role, content} messages; each user/assistant message is stored."
            ),
        ],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        metadata: Metadata = None,
        infer: Annotated[
            bool | None,
            Field(description="With an LLM configured: extract and reconcile facts (default). false stores verbatim."),
        ] = None,
    ) -> AddResult:
        """Remember something about the user or the task for later conversations.

        Call it when you learn a durable fact, preference, plan or correction worth recalling later.
        Good memories are short and self-contained ("Is allergic to peanuts", "Works at Acme as a
        data engineer"). Storing text identical to an existing memory in the same scope returns that
        memory with event NONE instead of a duplicate.
        """
        with agent_errors():
            return await service.add(messages, Scope(user_id, agent_id, run_id), metadata, infer, caller())

    @server.tool(annotations=READ)
    async def search_memories(
        query: Annotated[
            str, Field(description='What you want to recall, in natural language, e.g. "What are Alice\'s hobbies?"')
        ],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        limit: Annotated[int, Field(description="Most results to return (1-100).")] = 10,
        threshold: Annotated[
            float | None, Field(description="Drop results scoring below this (scores are cosine similarity, -1 to 1).")
        ] = None,
        filters: Filters = None,
    ) -> SearchResult:
        """Find stored memories by meaning, best match first.

        Call it before answering anything that may depend on what you were told earlier (preferences,
        plans, facts about the user). Each result has a `score`: higher is more relevant.
        """
        with agent_errors():
            return await service.search(query, Scope(user_id, agent_id, run_id), limit, threshold, filters, caller())

    @server.tool(annotations=READ)
    async def get_memory(memory_id: MemoryId) -> MemoryItem:
        """Read one memory by its id, e.g. to check its current text and metadata before updating it."""
        with agent_errors():
            return await service.get(memory_id, caller())

    @server.tool(annotations=READ)
    async def list_memories(
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        filters: Filters = None,
        limit: Annotated[int, Field(description="Page size (1-1000).")] = 100,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
    ) -> ListResult:
        """List the memories of a scope, oldest first, one page at a time.

        Use it to review everything stored; to find something specific, search_memories is better.
        When `next_cursor` is not null, pass it as `cursor` to get the next page.
        """
        with agent_errors():
            return await service.list(Scope(user_id, agent_id, run_id), filters, limit, cursor, caller())

    @server.tool(annotations=CHANGE)
    async def update_memory(
        memory_id: MemoryId,
        data: Annotated[str, Field(description='The corrected memory text, e.g. "Likes to play tennis on weekends".')],
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Replaces the memory's metadata when given; kept when omitted.")
        ] = None,
    ) -> MemoryItem:
        """Replace a memory's text (and optionally its metadata) when a fact changed or was wrong.

        Keeps the id and creation time; the old text stays readable in memory_history.
        """
        with agent_errors():
            return await service.update(memory_id, data, metadata, caller())

    @server.tool(annotations=CHANGE)
    async def delete_memory(memory_id: MemoryId) -> DeleteResult:
        """Forget one memory, e.g. when the user asks you to or it is no longer true.

        Its history stays readable with memory_history.
        """
        with agent_errors():
            return await service.delete(memory_id, caller())

    @server.tool(annotations=CHANGE)
    async def delete_all_memories(
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        confirm: Annotated[
            bool, Field(strict=True, description="Must be true: this deletes every memory of the scope.")
        ] = False,
    ) -> DeleteAllResult:
        """Forget every memory of one scope (a user, an agent or a run). Only when explicitly asked.

        Needs an explicit scope and confirm=true; other scopes are never touched.
        """
        with agent_errors():
            return await service.delete_all(Scope(user_id, agent_id, run_id), confirm, None, caller())

    @server.tool(annotations=READ)
    async def memory_history(memory_id: MemoryId) -> HistoryResult:
        """Show how one memory changed over time: every ADD, UPDATE and DELETE, oldest first.

        Works for deleted memories too.
        """
        with agent_errors():
            return await service.memory_history(memory_id, caller())
