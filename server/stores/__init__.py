"""Vector stores keep each live memory with its vector and serve similarity search.

Contract of a `VectorStore`:
- `await open(model_id, dimensions)` creates the collection or checks that an existing one was
  made by the same embedder (ConfigurationError naming both otherwise), then loads it.
- `upsert(rows)` and `delete(ids)` are idempotent by id; writes are serialised by the adapter.
- `search(vector, where, limit)` returns (record, cosine similarity) best first;
  `where` is a filter tree built by `server.filters` (never raw user text).
- `search_keywords(text, where, limit)` is BM25 full-text search, (record, score >= 0) best first;
  only when `keyword_search` is true after `open` (engines without BM25 stay dense only).
- `stale_schema` after `open`: the collection predates keyword search although the engine has it;
  `recreate(model_id, dimensions)` then drops it and creates it empty with the current schema,
  for the caller to refill.
- `upsert` never fails the whole batch for rows whose data the engine refuses: the others are
  stored, those are skipped and listed in `refused` (id -> reason) until a later write of the id
  succeeds; their pending marks stay (`doctor` reports them).
- `get(ids)` and `ids()` read back what is stored (for consistency checks).
- Failures raise BackendError subclasses with a message fit for the agent.
"""

from __future__ import annotations

from typing import Protocol

from ..filters import And
from ..records import MemoryRecord


class VectorStore(Protocol):
    async def open(self, model_id: str, dimensions: int) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None: ...

    async def delete(self, ids: list[str]) -> None: ...

    @property
    def keyword_search(self) -> bool: ...

    @property
    def stale_schema(self) -> bool: ...

    async def recreate(self, model_id: str, dimensions: int) -> None: ...

    async def search(self, vector: list[float], where: And, limit: int) -> list[tuple[MemoryRecord, float]]: ...

    async def search_keywords(self, text: str, where: And, limit: int) -> list[tuple[MemoryRecord, float]]: ...

    async def get(self, ids: list[str]) -> list[MemoryRecord]: ...

    async def ids(self) -> list[str]: ...

    async def flush(self) -> None: ...

    @property
    def needs_flush(self) -> bool: ...

    @property
    def refused(self) -> dict[str, str]: ...
