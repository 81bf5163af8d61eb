"""The MCP tools: thin, typed wrappers over `MemoryService`.

Each tool validates nothing itself and touches no store: it forwards to the core and turns the
core's errors into `ToolError`, whose message is all the agent sees. Numbers and booleans are
strict (`Field(strict=True)`): "10" or true for `limit`, "0.5" for `threshold` are refused by the
SDK's argument validation, naming the argument, instead of being coerced.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
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
from milvus_memory_mcp.records import ANONYMOUS, Caller, Scope
from milvus_memory_mcp.service import MemoryService

CallerProvider = Callable[[], Caller]
F = TypeVar("F", bound=Callable[..., Any])


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "system"] = Field(description="Who said it.")
    content: str = Field(description="What was said.")


UserId = Annotated[
    str | None,
    Field(
        description='The user the memory is about, e.g. "alice"; use the same stable id in every call. Name at '
        "least one of user_id, agent_id, run_id unless the server has a default user."
    ),
]
AgentId = Annotated[
    str | None, Field(description='The agent the memory belongs to, e.g. "travel-planner"; combined with AND.')
]
RunId = Annotated[
    str | None, Field(description='One conversation or task run, e.g. "session-42"; for short-lived context.')
]
MemoryId = Annotated[
    str,
    Field(
        description="The memory's id as returned by add_memory, search_memories or list_memories, "
        'e.g. "5f3dd46a-3d39-489d-9137-ab79be234add".'
    ),
]
FILTERS_HELP = (
    "Conditions on metadata keys, user_id / agent_id / run_id, or created_at / updated_at, "
    'e.g. {"category": "hobbies"} (equality); several keys must all hold. Operators: '
    '{"priority": {"gte": 3, "lt": 7}} with eq, ne, in, nin (lists), gt, gte, lt, lte, contains '
    "(array holds the value, or string holds the substring). Times are ISO-8601: "
    '{"created_at": {"gte": "2024-05-01T00:00:00Z"}}. Nest with AND / OR (lists) and NOT (one object): '
    '{"OR": [{"category": "work"}, {"NOT": {"tags": {"contains": "done"}}}]}. '
    "A memory lacking a metadata key never matches a condition on it (not even ne / nin / NOT)."
)
Filters = Annotated[dict[str, Any] | None, Field(description=FILTERS_HELP)]
AsOf = Annotated[
    str | None,
    Field(description='ISO-8601 time, e.g. "2024-05-01T12:00:00Z": the memories as they stood then. Omit for now.'),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(
        description='JSON object stored with the memory for later filtering, e.g. {"category": "hobbies"}. '
        "Keys: letters, digits, _ -."
    ),
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
            Field(
                description='One short, self-contained fact to remember, e.g. "Prefers window seats on '
                'flights", or a list of messages, e.g. [{"role": "user", "content": "I moved to Lyon"}]; '
                "each user/assistant message is stored."
            ),
        ],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        metadata: Metadata = None,
        infer: Annotated[
            bool | None,
            Field(
                strict=True,
                description="With an LLM configured: extract and reconcile facts (default). false stores verbatim.",
            ),
        ] = None,
    ) -> AddResult:
        """Remember a fact about the user or the task for later conversations.

        Call it when you learn something durable worth recalling in a future conversation: a fact,
        preference, plan, relationship or correction ("Is allergic to peanuts", "Works at Acme as a
        data engineer", "Exam on linear algebra on November 20"). A good memory is one short,
        self-contained sentence that still makes sense without the conversation: name things instead
        of "it" or "that", one fact per memory, no greetings or small talk. Search first if the fact
        may already be stored; to correct one, use update_memory. Identical text in the same scope
        returns the existing memory with event NONE instead of a duplicate.
        """
        with agent_errors():
            return await service.add(messages, Scope(user_id, agent_id, run_id), metadata, infer, caller())

    @tool(server, READ)
    async def search_memories(
        query: Annotated[
            str,
            Field(
                description='What you want to recall, in natural language, e.g. "What are Alice\'s hobbies?" or '
                '"dietary restrictions".'
            ),
        ],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        limit: Annotated[int, Field(strict=True, description="Most results to return (1-100), e.g. 5.")] = 10,
        threshold: Annotated[
            float | None,
            Field(
                strict=True,
                description="Drop results whose score is below this, e.g. 0.3. Hybrid scores (the default) run "
                "0-1; dense-only scores are cosine similarity, -1 to 1.",
            ),
        ] = None,
        filters: Filters = None,
        as_of: AsOf = None,
    ) -> SearchResult:
        """Find stored memories by meaning and by keywords, best match first.

        Call it at the start of a conversation and before answering anything that may depend on what
        you were told earlier (preferences, plans, facts about the user), and before add_memory to
        avoid storing a fact twice. Ask a focused question rather than pasting the whole message.
        Each result has a `score`: higher is more relevant; weak matches may be unrelated.
        """
        with agent_errors():
            scope = Scope(user_id, agent_id, run_id)
            return await service.search(query, scope, limit, threshold, filters, caller(), as_of)

    @tool(server, READ)
    async def get_memory(memory_id: MemoryId) -> MemoryItem:
        """Read one memory by its id, e.g. to check its current text and metadata before updating it.

        Call it when you hold an id (from add_memory, search_memories or list_memories); to find
        memories by content, use search_memories instead.
        """
        with agent_errors():
            return await service.get(memory_id, caller())

    @tool(server, READ)
    async def list_memories(
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        filters: Filters = None,
        limit: Annotated[int, Field(strict=True, description="Page size (1-1000), e.g. 50.")] = 100,
        cursor: Annotated[
            str | None, Field(description="next_cursor from the previous page; omit it for the first page.")
        ] = None,
        as_of: AsOf = None,
    ) -> ListResult:
        """List the memories of a scope, oldest first, one page at a time.

        Call it when the user asks what you remember about them, or to review and tidy a scope; to find
        something specific, search_memories is better. When `next_cursor` is not null, pass it as
        `cursor` to get the next page.
        """
        with agent_errors():
            return await service.list(Scope(user_id, agent_id, run_id), filters, limit, cursor, caller(), as_of)

    @tool(server, CHANGE)
    async def update_memory(
        memory_id: MemoryId,
        data: Annotated[
            str,
            Field(
                description="The complete corrected memory, one short self-contained sentence, "
                'e.g. "Likes to play tennis on weekends".'
            ),
        ],
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description='Replaces the metadata when given, e.g. {"category": "hobbies"}; kept when omitted.'),
        ] = None,
    ) -> MemoryItem:
        """Replace a memory's text (and optionally its metadata) when a fact changed or was wrong.

        Call it instead of add_memory when the user corrects or updates something already stored
        (find it with search_memories first). Write the whole new fact as a short, self-contained
        sentence, not a diff. Keeps the id and creation time; the old text stays in memory_history.
        """
        with agent_errors():
            return await service.update(memory_id, data, metadata, caller())

    @tool(server, CHANGE)
    async def delete_memory(memory_id: MemoryId) -> DeleteResult:
        """Forget one memory, e.g. when the user asks you to or it is no longer true.

        Call it for a fact that stopped being true with nothing to replace it; when it changed, use
        update_memory instead. Its history stays readable with memory_history.
        """
        with agent_errors():
            return await service.delete(memory_id, caller())

    @tool(server, CHANGE)
    async def delete_all_memories(
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        confirm: Annotated[
            bool, Field(strict=True, description="Must be true: this deletes every memory of the scope.")
        ] = False,
        filters: Annotated[
            dict[str, Any] | None,
            Field(description="Delete only the scope's memories matching these conditions. " + FILTERS_HELP),
        ] = None,
    ) -> DeleteAllResult:
        """Forget every memory of one scope (a user, an agent or a run). Only when explicitly asked.

        Call it only when the user asks to erase everything you remember about them (or a run);
        never to tidy up. Needs an explicit scope and confirm=true; other scopes are never touched.
        With filters, only the matching memories of the scope are deleted.
        """
        with agent_errors():
            return await service.delete_all(Scope(user_id, agent_id, run_id), confirm, filters, caller())

    @tool(server, READ)
    async def memory_history(memory_id: MemoryId) -> HistoryResult:
        """Show how one memory changed over time: every ADD, UPDATE and DELETE, oldest first.

        Call it when the user asks what a fact used to be, or when or why it changed. Works for
        deleted memories too.
        """
        with agent_errors():
            return await service.memory_history(memory_id, caller())

    @tool(server, WRITE)
    async def restore_memory(
        memory_id: MemoryId,
        event_id: Annotated[
            str | None,
            Field(
                description='Restore the state just after this memory_history event, e.g. "0c9a7b1e-5d3f-4c2a-9e8b-'
                '1f2a3b4c5d6e"; omit it to undo the last change.'
            ),
        ] = None,
    ) -> MemoryItem:
        """Undo: bring a memory back to an earlier state, deleted memories included.

        Call it when a change to a memory was a mistake (a wrong update or delete). Recorded in
        memory_history as a RESTORE, so it can be undone in turn.
        """
        with agent_errors():
            return await service.restore(memory_id, event_id, caller())
