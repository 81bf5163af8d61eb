"""An in-process vector store: a dict and a brute-force cosine search; nothing is persisted.

For tests of the core that need neither Milvus nor the model (the write protocol's unit tests use
it, with fault injection on top): it keeps the `VectorStore` contract, including Lite's "durable
only after a flush" when `needs_flush` is true. Filters beyond the scope are resolved through the
history store (the same SQL semantics the search index uses). Dense search only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from milvus_memory_mcp.filters import And, scope_only
from milvus_memory_mcp.records import MemoryRecord

if TYPE_CHECKING:
    from milvus_memory_mcp.history import RecordStore
    from milvus_memory_mcp.stores import Hits


class InMemoryStore:
    def __init__(
        self,
        history: RecordStore,
        *,
        needs_flush: bool = True,
        rows: dict[str, tuple[MemoryRecord, list[float]]] | None = None,
        collections: dict[str, dict[str, tuple[MemoryRecord, list[float]]]] | None = None,
    ) -> None:
        """`rows` shared between two instances makes the second see what the first wrote (a restart)."""
        self._history = history
        self._needs_flush = needs_flush
        self._rows = {} if rows is None else rows
        # Every collection's rows by name (shared with siblings); the first one opened is "".
        self._collections = {"": self._rows} if collections is None else collections
        self._unflushed: set[str] = set()
        self._durable: set[str] = set()
        self._signature: tuple[str, int] | None = None
        self.opened = False

    @property
    def keyword_search(self) -> bool:
        return False

    @property
    def needs_flush(self) -> bool:
        return self._needs_flush

    @property
    def refused(self) -> dict[str, str]:
        return {}

    @property
    def write_ts(self) -> int:
        return 0

    @property
    def stale_schema(self) -> bool:
        return False

    async def open_reads(self, model_id: str, dimensions: int) -> bool:
        return False

    async def open(self, model_id: str, dimensions: int) -> None:
        from milvus_memory_mcp.errors import ConfigurationError

        if self._signature not in (None, (model_id, dimensions)):
            raise ConfigurationError(f"This store holds vectors of {self._signature}, not of {model_id!r}.")
        self._signature = (model_id, dimensions)
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def recreate(self, model_id: str, dimensions: int) -> None:
        self._rows.clear()
        self._signature = (model_id, dimensions)

    def use_collection(self, name: str) -> None:
        self._rows = self._collections.setdefault(name, {})
        self._signature = None

    async def sibling(self, collection: str, model_id: str, dimensions: int) -> InMemoryStore:
        other = InMemoryStore(self._history, needs_flush=self._needs_flush, collections=self._collections)
        other.use_collection(collection)
        await other.open(model_id, dimensions)
        return other

    async def has_collection(self, name: str) -> bool:
        return name in self._collections

    async def drop_collection(self, name: str) -> None:
        self._collections.pop(name, None)

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        for record, vector in rows:
            self._rows[record.id] = (record, vector)
            self._written(record.id)

    async def delete(self, ids: list[str]) -> None:
        for memory_id in ids:
            self._rows.pop(memory_id, None)
            self._written(memory_id)

    def _written(self, memory_id: str) -> None:
        if self._needs_flush:
            self._unflushed.add(memory_id)

    async def prepare_flush(self) -> None:
        pass

    async def idle(self) -> None:
        pass

    async def flush(self) -> None:
        self._durable |= self._unflushed
        self._unflushed = set()

    def take_durable(self) -> set[str]:
        durable, self._durable = self._durable, set()
        return durable

    async def search(self, vector: list[float], where: And, limit: int) -> Hits:
        scope = scope_only(where)
        if scope is not None:
            rows = [row for row in self._rows.values() if scope.contains(row[0])]
        else:
            allowed = set(await self._history.live_ids(where))
            rows = [row for row in self._rows.values() if row[0].id in allowed]
        scored = [(record, sum(a * b for a, b in zip(vector, v, strict=True))) for record, v in rows]
        return sorted(scored, key=lambda hit: -hit[1])[:limit]

    async def search_keywords(self, text: str, where: And, limit: int) -> Hits:
        return []

    async def get(self, ids: list[str]) -> list[MemoryRecord]:
        return [self._rows[i][0] for i in ids if i in self._rows]

    async def ids(self) -> list[str]:
        return list(self._rows)

    @property
    def ranks_by_stored_keywords(self) -> bool:
        return False

    async def stale_keywords(self, records: list[MemoryRecord]) -> list[str]:
        return []  # no keyword field

    async def vectors_of(self, ids: list[str]) -> dict[str, list[float]]:
        return {i: self._rows[i][1] for i in ids if i in self._rows}
