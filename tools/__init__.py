"""The MCP tools: thin, typed wrappers over `MemoryService`.

Each tool validates nothing itself and touches no store: it forwards to the core and turns the
core's errors into `ToolError`, whose message is all the agent sees. Arguments are checked against
the schema first (tools/arguments.py: unknown arguments, types and bounds, in the product's own
one-line messages); numbers and booleans are strict (`Field(strict=True)`): "10" or true for
`limit` are refused, never coerced. Results are compact unless `verbose` (tools/render.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from milvus_memory_mcp.errors import MemoryServiceError
from milvus_memory_mcp.models import (
    AddResult,
    DeleteAllResult,
    DeleteResult,
    HistoryResult,
    ListResult,
    MemoryItem,
    SearchResult,
)
from milvus_memory_mcp.ranking import EXAMPLE_THRESHOLD
from milvus_memory_mcp.records import ANONYMOUS, Caller, Scope
from milvus_memory_mcp.service import MAX_LIST_LIMIT, MAX_SEARCH_LIMIT, MemoryService
from milvus_memory_mcp.tools.arguments import strict_arguments
from milvus_memory_mcp.tools.prompts import register_prompts
from milvus_memory_mcp.tools.render import respond

CallerProvider = Callable[[], Caller]
F = TypeVar("F", bound=Callable[..., Any])


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str


UserId = Annotated[str | None, Field(description='e.g. "alice"; the same id every time.')]
ScopeId = str | None  # the other tools: add_memory and search_memories say what a user_id is
AgentId = str | None
RunId = str | None
MemoryId = str
FILTERS_HELP = (
    'Conditions on metadata, scope or created_at: {"category": "hobbies"}, {"priority": {"gte": 3}} '
    "(eq ne in nin gt gte lt lte contains), AND / OR / NOT."
)
Filters = Annotated[dict[str, Any] | None, Field(description=FILTERS_HELP)]
SameAsOf = Annotated[str | None, Field(description="As in search_memories.")]
SameFilters = Annotated[dict[str, Any] | None, Field(description="As in search_memories.")]
AsOf = Annotated[str | None, Field(description='ISO-8601, e.g. "2024-05-01T12:00:00Z": memories as they stood then.')]
Metadata = Annotated[dict[str, Any] | None, Field(description='e.g. {"category": "hobbies"}.')]
Verbose = Annotated[bool, Field(strict=True, description="Every field.")]
MaxTokens = Annotated[
    int | None, Field(strict=True, ge=1, le=100_000, description="Cut the result to this many tokens.")
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


@contextmanager
def agent_errors() -> Iterator[None]:
    """Turn the core's errors into ToolError, the only kind whose message reaches the agent."""
    try:
        yield
    except MemoryServiceError as e:
        raise ToolError(str(e)) from e


def tool(server: MCPServer, annotations: ToolAnnotations) -> Callable[[F], F]:
    """`server.tool` with the docstring dedented (before Python 3.13 the SDK sends its indentation to clients)."""

    def decorate(fn: F) -> F:
        return server.tool(annotations=annotations, description=inspect.cleandoc(fn.__doc__ or ""))(fn)

    return decorate


def register(server: MCPServer, service: MemoryService, caller: CallerProvider = lambda: ANONYMOUS) -> None:
    """Register every memory tool on `server`, bound to `service`."""

    @tool(server, WRITE)
    async def add_memory(
        messages: Annotated[
            str | list[ChatMessage],
            Field(description='A fact, e.g. "Prefers window seats", or [{"role": "user", "content": "..."}].'),
        ],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        metadata: Metadata = None,
        infer: Annotated[
            bool | None, Field(strict=True, description="With an LLM: extract facts (default); false: verbatim.")
        ] = None,
    ) -> Annotated[CallToolResult, AddResult]:
        """Remember a durable fact, preference, plan or correction for later conversations.

        One short, self-contained sentence ("Is allergic to peanuts"): name things, one fact each.
        Search first; to correct a memory use update_memory.
        """
        with agent_errors():
            return respond(await service.add(messages, Scope(user_id, agent_id, run_id), metadata, infer, caller()))

    @tool(server, READ)
    async def search_memories(
        query: Annotated[str, Field(description='What to recall, e.g. "dietary restrictions".')],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        limit: Annotated[int, Field(strict=True, ge=1, le=MAX_SEARCH_LIMIT)] = 10,
        threshold: Annotated[
            float | None,
            Field(strict=True, ge=-1, le=1, description=f"Drop scores below this, e.g. {EXAMPLE_THRESHOLD}."),
        ] = None,
        filters: Filters = None,
        as_of: AsOf = None,
        max_tokens: MaxTokens = None,
        verbose: Verbose = False,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Find memories by meaning and keywords, best first (score 0-1).

        Call it before answering anything that may depend on earlier conversations (preferences,
        plans, facts about the user) and before add_memory. Ask a focused question.
        """
        scope = Scope(user_id, agent_id, run_id)
        with agent_errors():
            result = await service.search(query, scope, limit, threshold, filters, caller(), as_of)
            return respond(result, verbose=verbose, named=scope, max_tokens=max_tokens)

    @tool(server, READ)
    async def get_memory(memory_id: MemoryId, verbose: Verbose = False) -> Annotated[CallToolResult, MemoryItem]:
        """Read one memory by id."""
        with agent_errors():
            return respond(await service.get(memory_id, caller()), verbose=verbose)

    @tool(server, READ)
    async def list_memories(
        user_id: ScopeId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        filters: SameFilters = None,
        limit: Annotated[int, Field(strict=True, ge=1, le=MAX_LIST_LIMIT)] = 100,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
        as_of: SameAsOf = None,
        max_tokens: MaxTokens = None,
        verbose: Verbose = False,
    ) -> Annotated[CallToolResult, ListResult]:
        """List a scope's memories, oldest first, a page at a time.

        For "what do you remember about me" or tidying up; to find something, search_memories.
        """
        scope = Scope(user_id, agent_id, run_id)
        with agent_errors():
            result = await service.list(scope, filters, limit, cursor, caller(), as_of)
            return respond(result, verbose=verbose, named=scope, max_tokens=max_tokens)

    @tool(server, CHANGE)
    async def update_memory(
        memory_id: MemoryId,
        data: Annotated[str, Field(description='e.g. "Likes to play tennis on weekends".')],
        metadata: Annotated[dict[str, Any] | None, Field(description="Replaces the metadata; kept if omitted.")] = None,
    ) -> Annotated[CallToolResult, MemoryItem]:
        """Replace a memory's text when the fact changed or was wrong.

        Write the whole fact, self-contained; the old text stays in memory_history.
        """
        with agent_errors():
            return respond(await service.update(memory_id, data, metadata, caller()))

    @tool(server, CHANGE)
    async def delete_memory(memory_id: MemoryId) -> Annotated[CallToolResult, DeleteResult]:
        """Forget one memory that is no longer true (if it changed, use update_memory).

        Deleting it again answers deleted=false.
        """
        with agent_errors():
            return respond(await service.delete(memory_id, caller()))

    @tool(server, CHANGE)
    async def delete_all_memories(
        user_id: ScopeId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        confirm: Annotated[bool, Field(strict=True, description="Must be true.")] = False,
        filters: SameFilters = None,
    ) -> Annotated[CallToolResult, DeleteAllResult]:
        """Forget every memory of one scope, only when the user explicitly asks to erase it."""
        with agent_errors():
            return respond(await service.delete_all(Scope(user_id, agent_id, run_id), confirm, filters, caller()))

    @tool(server, READ)
    async def memory_history(memory_id: MemoryId, verbose: Verbose = False) -> Annotated[CallToolResult, HistoryResult]:
        """How one memory changed (ADD, UPDATE, DELETE), oldest first; works for deleted ones."""
        with agent_errors():
            return respond(await service.memory_history(memory_id, caller()), verbose=verbose)

    @tool(server, WRITE)
    async def restore_memory(
        memory_id: MemoryId,
        event_id: Annotated[
            str | None,
            Field(description="A memory_history event id: the state just after it. Omit: undo the last change."),
        ] = None,
    ) -> Annotated[CallToolResult, MemoryItem]:
        """Undo a wrong update or delete: bring a memory back to an earlier state (recorded as RESTORE)."""
        with agent_errors():
            return respond(await service.restore(memory_id, event_id, caller()))

    strict_arguments(server)
    register_prompts(server, EXAMPLE_THRESHOLD)
