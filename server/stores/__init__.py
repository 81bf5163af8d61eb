"""Vector stores keep each live memory with its vector and serve similarity search.

Two contracts, by who needs them:

`VectorStore`, what searches and writes need (the core's view):
- `await open(model_id, dimensions)` creates the collection or checks that an existing one was
  made by the same embedder (ConfigurationError naming both otherwise), then loads it. A Milvus
  store first checks that the collection belongs to this memory store, before reading or writing
  it (stores/identity.py; ConfigurationError otherwise); the in-process test store does not.
  `await open_reads(model_id, dimensions)` may open only what searches need, before `open`
  (True when searches can then be served; False when they need `open`).
- `upsert(rows)` and `delete(ids)` are idempotent by id; writes are serialised by the adapter.
  `upsert` never fails the whole batch for rows whose data the engine refuses: the others are
  stored, those are skipped and listed in `refused` (id -> reason) until a later write of the id
  succeeds; their pending marks stay (`doctor` reports them).
- `needs_flush`: writes become durable only at `flush()` (elsewhere when they return, and `flush()`
  does nothing). `take_durable()` returns, and forgets, the ids of the writes made durable since
  it was last called; a failed flush makes none durable. The write protocol clears pending marks
  by what it returns.
- `write_ts`: a Milvus server's timestamp later than every write of this process so far (0 where
  there is none: Lite, the in-process store); the write protocol records it in the history store,
  and a server's searches wait until the server has applied the latest one recorded (read-your-writes
  across processes, `stores/milvus_client.py` `WriteClock`).
- `search(vector, where, limit)` returns (record, cosine similarity) best first;
  `where` is a filter tree built by `server.filters` (never raw user text).
- `search_keywords(text, where, limit)` is BM25 full-text search, (record, score >= 0) best first;
  only when `keyword_search` is true after `open` (engines without BM25 stay dense only).

`StoreMaintenance`, what start-up rebuilds and `doctor` need:
- `stale_schema` after `open`: the collection predates keyword search although the engine has it;
  `recreate(model_id, dimensions)` then drops it and creates it empty with the current schema,
  for the caller to refill.
- `get(ids)`, `ids()` and `vectors_of(ids)` read back what is stored; `stale_keywords(records)`
  names those of the records whose stored keyword text (a Milvus 2.5+ or Lite collection's
  `keywords` field, which BM25 indexes) an older keyword analysis wrote (`keywords.ANALYSIS`);
  `ranks_by_stored_keywords`: that text is what keyword searches rank by (not where the search
  index, built from SQLite, answers them).
- `reembed` (server/core/reembed.py): `use_collection(name)` picks the collection `open` opens
  (no I/O); `sibling(name, model_id, dimensions)` is a plain store of another collection on the
  same open engine, made or checked for that embedder (its `close` closes nothing shared);
  `has_collection(name)`; `drop_collection(name)` drops another collection if it exists (never
  another memory store's).

Failures raise BackendError subclasses with a message fit for the agent. `make_vector_store` is
the only place that picks a concrete store (docs/ARCHITECTURE.md, "Adding a store").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from milvus_memory_mcp.filters import And
from milvus_memory_mcp.records import MemoryRecord

if TYPE_CHECKING:
    from milvus_memory_mcp.history import HistoryStore
    from milvus_memory_mcp.settings import Settings

Hits = list[tuple[MemoryRecord, float]]


class VectorStore(Protocol):
    @property
    def keyword_search(self) -> bool: ...

    @property
    def needs_flush(self) -> bool: ...

    @property
    def refused(self) -> dict[str, str]: ...

    @property
    def write_ts(self) -> int: ...

    async def open(self, model_id: str, dimensions: int) -> None: ...

    async def open_reads(self, model_id: str, dimensions: int) -> bool: ...

    async def close(self) -> None: ...

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None: ...

    async def delete(self, ids: list[str]) -> None: ...

    async def flush(self) -> None: ...

    async def prepare_flush(self) -> None:
        """Before a `flush`, outside the write lock: read back what the flush needs (a parked Lite
        collection), so that writes do not wait for it."""
        ...

    async def idle(self) -> None:
        """No write for a while: give back memory kept for writes (a Lite collection, `park`)."""
        ...

    def take_durable(self) -> set[str]: ...

    async def search(self, vector: list[float], where: And, limit: int) -> Hits: ...

    async def search_keywords(self, text: str, where: And, limit: int) -> Hits: ...


class StoreMaintenance(Protocol):
    @property
    def stale_schema(self) -> bool: ...

    @property
    def ranks_by_stored_keywords(self) -> bool: ...

    async def recreate(self, model_id: str, dimensions: int) -> None: ...

    async def get(self, ids: list[str]) -> list[MemoryRecord]: ...

    async def ids(self) -> list[str]: ...

    async def vectors_of(self, ids: list[str]) -> dict[str, list[float]]: ...

    async def stale_keywords(self, records: list[MemoryRecord]) -> list[str]: ...

    def use_collection(self, name: str) -> None: ...

    async def sibling(self, collection: str, model_id: str, dimensions: int) -> Store: ...

    async def has_collection(self, name: str) -> bool: ...

    async def drop_collection(self, name: str) -> None: ...


class Store(VectorStore, StoreMaintenance, Protocol):
    """A store as the factory makes it: both views of one object."""


def make_vector_store(settings: Settings, history: HistoryStore) -> Store:
    """The configured store, no I/O: Milvus Lite answered by the in-memory search index (the
    default), Milvus Lite alone (MEMORY_SEARCH_INDEX=false), or a Milvus server / Zilliz Cloud."""
    from milvus_memory_mcp.stores.capabilities import Capabilities
    from milvus_memory_mcp.stores.identity import StoreIdentity, location_of
    from milvus_memory_mcp.stores.milvus import MilvusStore

    uri = settings.resolved_milvus_uri
    lite = Capabilities.detect(uri).lite
    indexed = lite and settings.search_index
    if settings.history_url:
        history_name = f"the PostgreSQL history (MEMORY_HISTORY_URL) of MEMORY_COLLECTION={settings.collection!r}"
    else:
        history_name = f"the history database {settings.resolved_history_path}"
    identity = StoreIdentity(
        history,
        settings.collection,
        location_of(uri, settings.milvus_db_name, lite),
        shared=bool(settings.history_url),
        history_name=history_name,
    )
    milvus = MilvusStore(
        uri,
        settings.collection,
        settings.milvus_token,
        db_name=settings.milvus_db_name,
        timeout=settings.milvus_timeout,
        num_partitions=settings.milvus_num_partitions,
        park=indexed,
        recorded_write=history.vector_ts_of,
        identity=identity,
    )
    if indexed:
        from milvus_memory_mcp.stores.indexed import IndexedStore

        history_path = settings.resolved_history_path
        saved = history_path.with_name(f"{history_path.name}.{settings.collection}.index")
        return IndexedStore(milvus, history, saved, identity)
    return milvus


__all__ = ["Hits", "Store", "StoreMaintenance", "VectorStore", "make_vector_store"]
