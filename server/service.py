"""MemoryService: the one async core behind every tool, as a thin facade.

Each tool method checks its arguments, resolves the scope and delegates to an owner in
server/core/ (docs/ARCHITECTURE.md maps them). The constructor does no I/O; `async with
MemoryService(...)` runs its background tasks (the debounced flush, warm-up) and closes the
stores, and the model if it made it, on exit.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio

from milvus_memory_mcp import filters, models
from milvus_memory_mcp.core import dashboard, scopes, stats
from milvus_memory_mcp.core.adds import VerbatimAdds
from milvus_memory_mcp.core.cursors import decode_cursor
from milvus_memory_mcp.core.edits import Edits
from milvus_memory_mcp.core.inferred import InferredAdds
from milvus_memory_mcp.core.lifecycle import Lifecycle
from milvus_memory_mcp.core.messages import parse_messages
from milvus_memory_mcp.core.past import PastSearch
from milvus_memory_mcp.core.reembed import Reembedder, SwitchableEmbedder, check_step
from milvus_memory_mcp.core.restore import Restorer
from milvus_memory_mcp.core.rewrite import make_rewriter
from milvus_memory_mcp.core.search import Searcher
from milvus_memory_mcp.core.transfer import Importer
from milvus_memory_mcp.core.writes import WriteLock, WriteProtocol
from milvus_memory_mcp.embedders import Embedder, embed_signed, make_embedder
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.history import HistoryStore, make_history
from milvus_memory_mcp.inference import ChatModel, make_llm
from milvus_memory_mcp.records import ANONYMOUS, Caller, MemoryRecord, Scope, now_us
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Store, make_vector_store
from milvus_memory_mcp.validation import check_limit, check_memory_id, check_metadata, check_text, check_threshold

MAX_SEARCH_LIMIT = 100
MAX_LIST_LIMIT = 1000
FUTURE_SKEW_US = 300 * 1_000_000  # an add's `at` may run this far ahead of our clock (another machine's)


class MemoryService:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        vectors: Store | None = None,
        history: HistoryStore | None = None,
        llm: ChatModel | None = None,
    ) -> None:
        self._settings = settings
        self.embedder = SwitchableEmbedder(embedder or make_embedder(settings))  # `reembed` switches it
        self.llm = llm or make_llm(settings)
        self.history = history or make_history(settings)
        self.vectors: Store = vectors or make_vector_store(settings, self.history)
        self._writes = WriteProtocol(settings, self.history, self.vectors, self.embedder)
        owns_embedder = embedder is None  # then closed with the stores; otherwise its maker closes it
        self._lifecycle = Lifecycle(settings, self.history, self.vectors, self.embedder, self._writes, owns_embedder)
        self._verbatim = VerbatimAdds(settings, self.history, self.vectors, self._writes)
        parts = (self.embedder, self.history, self.vectors, self._writes, self._verbatim)
        self._inferred = InferredAdds(settings, self.llm, *parts) if self.llm is not None else None
        self._searcher = Searcher(settings, self.vectors, self.embedder, make_rewriter(settings, self.llm))
        self._past = PastSearch(settings, self.history, self.embedder)
        self._restorer = Restorer(self.history, self._writes, self.embedder)
        self._importer = Importer(self.history, self._writes, self.embedder, settings.max_memory_bytes)
        self._edits = Edits(self.history, self._writes)
        self._reembed = Reembedder(settings, self.history, self.vectors, self.embedder, self._writes, self._lifecycle)
        self._stack: AsyncExitStack | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        """New settings for every owner (tests change the search mode of a running service)."""
        self._settings = value
        for owner in (self._writes, self._lifecycle, self._verbatim, self._inferred, self._searcher, self._past):
            if owner is not None:
                owner.settings = value

    async def __aenter__(self) -> MemoryService:
        async with AsyncExitStack() as stack:
            # Undone in reverse: the background tasks end, then the last flush, the stores, the models.
            stack.push_async_callback(self._reembed.close)
            stack.push_async_callback(self._lifecycle.close)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(self._writes.run_flusher)
            self._lifecycle.attach(tg)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()  # each closing step shields itself from cancellation

    def warm_up(self) -> None:
        """Open the stores and the model in the background (after the MCP handshake)."""
        self._lifecycle.warm_up()

    async def standby(self) -> None:
        """This process forwards its calls to another (server/sharing.py): free the model for now."""
        await self.embedder.close()

    @property
    def is_ready(self) -> bool:
        return self._lifecycle.is_ready

    async def ready(self, *, apply_pending: bool = True) -> None:
        await self._lifecycle.ready(apply_pending=apply_pending)

    async def flush(self) -> None:
        await self._writes.flush()

    @property
    def write_lock(self) -> WriteLock:
        """Held by every write (cluster-wide on a PostgreSQL history): `doctor` re-reads under it."""
        return self._writes.lock

    async def resync(self, ids: list[str]) -> None:
        """Make the vector store match SQLite's record for `ids` (used by `doctor --repair`)."""
        await self.ready()
        await self._writes.resync(ids)

    def _scope_for(self, explicit: Scope, caller: Caller, *, use_default: bool = True) -> Scope:
        return scopes.resolve(explicit, caller, self.settings.user_id, use_default=use_default)

    async def add(
        self,
        messages: object,
        scope: Scope,
        metadata: object = None,
        infer: bool | None = None,
        caller: Caller = ANONYMOUS,
        at: object = None,
    ) -> models.AddResult:
        """Store `messages` in `scope`; `at` (ISO-8601) dates the memories this creates: when they
        were said, for a conversation stored later (default now)."""
        scopes.check_writable(caller)
        scope = self._scope_for(scope, caller)
        meta = check_metadata(metadata)
        said_at = filters.parse_instant("at", at)
        if said_at is not None and said_at > now_us() + FUTURE_SKEW_US:
            raise InvalidInput(f"at is in the future ({at}); it says when the messages were said, by default now.")
        s = self.settings
        parsed = [m for m in parse_messages(messages, s.max_memory_bytes, s.max_messages) if m.role != "system"]
        if not parsed:
            raise InvalidInput("messages holds only system messages; there is nothing to remember.")
        if infer and self._inferred is None:
            raise InvalidInput("infer=true needs an LLM, and none is configured (set MEMORY_LLM); omit infer.")
        await self.ready()
        if self._inferred is not None and infer is not False:
            return await self._inferred.add(parsed, scope, meta, caller, said_at)
        signed = await embed_signed(self.embedder, [m.content for m in parsed])
        return await self._verbatim.add(parsed, signed, scope, meta, caller, near_dup=infer is None, at=said_at)

    async def search(
        self,
        query: object,
        scope: Scope,
        limit: object = 10,
        threshold: float | None = None,
        filters_: object = None,
        caller: Caller = ANONYMOUS,
        as_of: object = None,
    ) -> models.SearchResult:
        text = check_text(query, self.settings.max_memory_bytes, "query")
        scope = self._scope_for(scopes.from_filters(scope, filters_), caller)
        limit = check_limit(limit, 1, MAX_SEARCH_LIMIT)
        check_threshold(threshold)
        where = filters.within(scope, filters_)
        at = filters.parse_instant("as_of", as_of)
        await self._lifecycle.ready_for_reads()
        hits = await (
            self._searcher.search(text, where, limit) if at is None else self._past.search(text, where, at, limit)
        )
        kept = [models.SearchHit.scored(r, x) for r, x in hits if threshold is None or x >= threshold]
        return models.SearchResult(results=kept)

    async def get(self, memory_id: str, caller: Caller = ANONYMOUS) -> models.MemoryItem:
        return models.MemoryItem.of(await self._owned(memory_id, caller))

    async def _owned(self, memory_id: object, caller: Caller, *, include_deleted: bool = False) -> MemoryRecord:
        memory_id = check_memory_id(memory_id)
        await self._lifecycle.ready_for_reads()
        return await scopes.owned(self.history, memory_id, caller, include_deleted=include_deleted)

    async def list(
        self,
        scope: Scope,
        filters_: object = None,
        limit: object = 100,
        cursor: str | None = None,
        caller: Caller = ANONYMOUS,
        as_of: object = None,
    ) -> models.ListResult:
        scope = self._scope_for(scopes.from_filters(scope, filters_), caller)
        limit = check_limit(limit, 1, MAX_LIST_LIMIT)
        where = filters.within(scope, filters_)
        after = decode_cursor(cursor) if cursor else None
        at = filters.parse_instant("as_of", as_of)
        await self._lifecycle.ready_for_reads()
        h = self.history
        rows = await (h.list_live(where, limit + 1, after) if at is None else h.list_at(where, at, limit + 1, after))
        return models.ListResult.page(rows[:limit], len(rows) > limit)

    async def update(
        self, memory_id: str, data: object, metadata: object = None, caller: Caller = ANONYMOUS
    ) -> models.MemoryItem:
        scopes.check_writable(caller)
        memory_id = check_memory_id(memory_id)
        text = check_text(data, self.settings.max_memory_bytes)
        meta = None if metadata is None else check_metadata(metadata)
        await self._owned(memory_id, caller)  # fail fast before embedding
        signed = await embed_signed(self.embedder, [text])
        await self.ready()
        return models.MemoryItem.of(await self._edits.update(memory_id, text, meta, signed, caller))

    async def delete(self, memory_id: str, caller: Caller = ANONYMOUS) -> models.DeleteResult:
        scopes.check_writable(caller)
        memory_id = check_memory_id(memory_id)
        await self.ready()
        if not await self._edits.delete(memory_id, caller):  # idempotent: an id once live in the caller's scope
            return models.DeleteResult(id=memory_id, deleted=False, message=scopes.ALREADY_DELETED)
        return models.DeleteResult(id=memory_id, deleted=True, message=f"Memory {memory_id} deleted.")

    async def delete_all(
        self, scope: Scope, confirm: bool, filters_: object = None, caller: Caller = ANONYMOUS
    ) -> models.DeleteAllResult:
        scope = scopes.for_delete_all(scope, filters_, confirm, caller, self.settings.user_id)
        where = filters.within(scope, filters_)
        await self.ready()
        count = await self._edits.delete_all(where, caller)
        return models.DeleteAllResult(
            deleted_count=count, scope=dict(scope.items()), message=f"Deleted {count} memories of {scope.describe()}."
        )

    async def memory_history(self, memory_id: str, caller: Caller = ANONYMOUS) -> models.HistoryResult:
        record = await self._owned(memory_id, caller, include_deleted=True)
        events = await self.history.history(record.id)
        return models.HistoryResult(memory_id=record.id, events=[models.HistoryEvent.of(h) for h in events])

    async def restore(self, memory_id: str, event_id: object = None, caller: Caller = ANONYMOUS) -> models.MemoryItem:
        scopes.check_writable(caller)
        memory_id = check_memory_id(memory_id)
        await self.ready()
        return models.MemoryItem.of(await self._restorer.restore(memory_id, event_id, caller))

    async def stats(self) -> dict[str, Any]:
        """The owner's overview (the CLI's `stats`): not a tool."""
        await self._lifecycle.ready_for_reads()
        return await stats.collect(self.settings, self.history, self.embedder)

    async def activity(self, scope: Scope, days: int) -> dict[str, Any]:
        """Writes per day and live memories of the scope's memories (the dashboard's charts), as JSON: not a tool."""
        await self._lifecycle.ready_for_reads()
        where = None if scope.is_empty() else filters.scope_conditions(scope)
        return dashboard.to_json(await dashboard.activity(self.history, where, days, now_us()))

    async def import_batch(self, lines: list[object], on_conflict: object, file_embedder: object) -> dict[str, Any]:
        """Memory lines of an export file (server/core/transfer.py): not a tool."""
        await self.ready()
        return await self._importer.import_batch(lines, on_conflict, file_embedder)

    async def reembed_step(self, embedder: object, dimensions: object, limit: object) -> dict[str, Any]:
        """One bounded step of `reembed` (server/core/reembed.py): not a tool."""
        return await self._reembed.step(*check_step(embedder, dimensions, limit))
