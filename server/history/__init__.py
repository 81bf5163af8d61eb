"""The history store: the record of every memory and every change to it (the single source of truth).

Contracts, one per job (the SQLite adapter in `sqlite.py` implements all of them on one file; the
PostgreSQL one in `postgres/`, chosen by MEMORY_HISTORY_URL):
- `RecordStore`: each memory's current state and its event log. `commit(changes)` writes, in one
  transaction, each memory's new state, its history row, a pending mark and the new texts'
  embeddings; `revert(changes)` undoes exactly that. Reads take filter trees, never SQL.
- `PendingStore`: marks of changes the vector store may not hold yet; cleared once it does,
  re-applied at start-up when a crash left them.
- `EmbeddingStore`: each stored text's vector, so re-applying a change or building the search
  index needs no model.
- `ReembedStore`: the active Milvus collection and `reembed`'s progress (history/reembed.py).
- `write_lock()`: held around every write (core/writes.py): a no-op on SQLite (one owner process),
  a cluster-wide advisory lock on PostgreSQL, shared by replicas (postgres/lock.py).
Failures raise `StoreUnavailable` with a message fit for the agent.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from milvus_memory_mcp.history.embeddings import Embedded
from milvus_memory_mcp.history.sqlite import SQLiteHistory

if TYPE_CHECKING:
    from milvus_memory_mcp.filters import Node
    from milvus_memory_mcp.records import Change, HistoryEntry, MemoryRecord
    from milvus_memory_mcp.settings import Settings


class RecordStore(Protocol):
    async def get(self, memory_id: str) -> MemoryRecord | None: ...

    async def get_many(self, ids: list[str], where: Node | None = None) -> dict[str, MemoryRecord]: ...

    async def find_live_by_hash(self, text_hash: str, scope: tuple[str, str, str]) -> MemoryRecord | None: ...

    async def list_live(
        self, where: Node | None, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]: ...

    async def live_ids(self, where: Node | None = None) -> list[str]: ...

    async def list_at(
        self, where: Node | None, at: int, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]: ...

    async def versions(self, where: Node | None) -> list[tuple[MemoryRecord, int | None]]: ...

    async def history(self, memory_id: str) -> list[HistoryEntry]: ...

    async def counts(self) -> dict[str, Any]: ...

    async def note(self, entries: list[HistoryEntry]) -> None: ...

    async def commit(self, changes: list[Change], model: str | None = None) -> None: ...

    async def revert(self, changes: list[Change]) -> None: ...


class TransferStore(Protocol):
    async def count_all(self, where: Node | None) -> tuple[int, int]: ...

    async def export_page(
        self, where: Node | None, after: tuple[int, str] | None, limit: int
    ) -> list[tuple[MemoryRecord, list[HistoryEntry]]]: ...

    async def existing_ids(self, ids: list[str]) -> set[str]: ...

    async def event_owners(self, ids: list[str]) -> dict[str, str]: ...

    async def scope_events(self, where: Node | None) -> list[tuple[str, str, str, str, str, int]]: ...

    async def latest_events(self, where: Node | None, limit: int) -> list[HistoryEntry]: ...

    async def import_records(
        self, items: list[tuple[MemoryRecord, list[HistoryEntry], list[float] | None]], model: str
    ) -> None: ...


class PendingStore(Protocol):
    async def pending_ids(self) -> list[str]: ...

    async def mark_pending(self, ids: list[str]) -> None: ...

    async def clear_pending(self, ids: list[str]) -> None: ...


class EmbeddingStore(Protocol):
    async def save_embeddings(self, model: str, rows: list[tuple[str, str, list[float]]]) -> None: ...

    async def prune_embeddings(self) -> None: ...

    # Read by model and dimensions: `reembed` may move a store to the same model with other ones.
    async def embeddings(self, model: str, dims: int, hashes: list[str]) -> dict[str, list[float]]: ...

    async def embeddings_with_words(self, model: str, dims: int, hashes: list[str]) -> dict[str, tuple[bytes, str]]: ...

    async def live_embeddings(self, model: str, dims: int) -> list[Embedded]: ...

    async def index_mark(self, model: str) -> dict[str, object]: ...


class ReembedStore(Protocol):
    async def store_state(self) -> dict[str, str]: ...

    async def set_store_state(self, values: dict[str, str | None], *, forget_target: str | None = None) -> None: ...

    async def reembed_todo(self, target: str, limit: int) -> list[MemoryRecord]: ...

    async def reembed_gone(self, target: str, limit: int) -> list[str]: ...

    async def reembed_progress(self, target: str) -> tuple[int, int]: ...

    async def record_reembedded(self, target: str, written: list[MemoryRecord], removed: list[str]) -> None: ...

    async def switch_collection(self, target: str, model: str, retired: str, old_model: str) -> None: ...


class HistoryStore(RecordStore, TransferStore, PendingStore, EmbeddingStore, ReembedStore, Protocol):
    async def open(self) -> None: ...

    async def change_mark(self) -> tuple[int, int]: ...

    def write_lock(self) -> AbstractAsyncContextManager[None]: ...

    # A Milvus server's timestamp later than the latest write, by any process, for the collection and
    # per scope term (stores/milvus_client.py `WriteClock`).
    async def note_vector_ts(self, ts: int, terms: Collection[str] | None = None) -> None: ...

    async def vector_ts_of(self, terms: Collection[str]) -> dict[str, int]: ...

    async def close(self) -> None: ...


def make_history(settings: Settings) -> HistoryStore:
    """The configured history store; no I/O."""
    if settings.history_url:
        from milvus_memory_mcp.history.postgres import PostgresHistory

        return PostgresHistory(settings.history_url, settings.collection)
    return SQLiteHistory(settings.resolved_history_path, settings.collection)


__all__ = [
    "EmbeddingStore",
    "Embedded",
    "HistoryStore",
    "PendingStore",
    "RecordStore",
    "ReembedStore",
    "TransferStore",
    "SQLiteHistory",
    "make_history",
]
