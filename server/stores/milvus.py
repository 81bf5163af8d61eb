"""Milvus (Lite file or server) through pymilvus's sync client, run in worker threads.

One process-wide lock serialises every write and flush: concurrent writes through one Milvus
Lite client corrupt its write-ahead log (docs/ARCHITECTURE.md, "Milvus Lite"). Reads run concurrently.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

import anyio

from milvus_memory_mcp import filters
from milvus_memory_mcp.errors import BackendError, StoreUnavailable
from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import MemoryRecord, scope_terms
from milvus_memory_mcp.stores.capabilities import Capabilities
from milvus_memory_mcp.stores.milvus_client import (
    Deadline,
    ReadWriteLock,
    WriteClock,
    all_ids,
    collection_gone,
    connection_problem,
    load_collection,
    short,
    upsert_each_good,
)
from milvus_memory_mcp.stores.milvus_schema import (
    KEYWORD_FIELD,
    OUTPUT_FIELDS,
    PROP_EMBEDDER,
    PROP_TENANCY,
    SPARSE_FIELD,
    check_signature,
    create_collection,
    from_row,
    keyword_text,
    to_row,
)

if TYPE_CHECKING:
    from milvus_memory_mcp.stores.identity import StoreIdentity
    from milvus_memory_mcp.stores.lite import LiteServer

logger = logging.getLogger(__name__)
T = TypeVar("T")

SEQUENCE_MARK_ID = "milvus-memory-mcp:sequence"  # never a memory id (those are UUIDs)
COLLECTION_NOT_LOADED = 101  # Milvus error code
APPROXIMATE_POOL = 100  # candidates a search of an approximate index asks for, at least (see `search`)


class MilvusStore:
    def __init__(
        self,
        uri: str,
        collection: str,
        token: str | None = None,
        *,
        db_name: str | None = None,
        timeout: float = 10.0,
        num_partitions: int = 16,
        partition_key: bool | None = None,
        park: bool = False,
        recorded_write: Callable[[Collection[str]], Awaitable[dict[str, int]]] | None = None,
        identity: StoreIdentity | None = None,
    ) -> None:
        """`timeout` bounds each call including pymilvus's own retries; `partition_key` None = where supported;
        `park` (Lite behind the search index): not loaded at open, and given back when `idle`; `recorded_write`
        reads the latest writes' timestamps any process recorded, per scope term (`WriteClock`); `identity`
        refuses another memory store's collection and stamps the ones made (none: no check)."""
        self._uri = uri
        self._collection = collection
        self._token = token
        self._db_name = db_name
        self._timeout = timeout
        self._num_partitions = num_partitions
        self._partition_key = partition_key
        self._parks = park
        self._loaded = False  # with `park`: the collection is loaded (reads load it first)
        self._client: Any = None
        self._borrowed = False  # the connection is another store's (`sibling`): closed by that one
        self._lite: LiteServer | None = None
        self._write_lock = ReadWriteLock()
        self._clock = WriteClock(recorded_write)
        self._identity = identity
        self.capabilities = Capabilities.detect(uri)  # refined from the server's version by open()
        self.tenancy: str | None = None  # recorded with the collection; known after open()
        # Set by open(): whether the collection has the BM25 field, and whether it was made before
        # keyword search although the engine has it (the service then rebuilds it from SQLite).
        self.keyword_search = False
        self.stale_schema = False
        self._unflushed: set[str] = set()  # ids written since the last flush (Lite only)
        self._durable: set[str] = set()  # ids made durable by a flush, until `take_durable`
        # Rows the engine refused (id -> reason), e.g. metadata written before validation refused it.
        self.refused: dict[str, str] = {}

    @property
    def needs_flush(self) -> bool:
        return self.capabilities.flush_after_writes

    @property
    def write_ts(self) -> int:
        """A server timestamp later than every write of this process so far (0 on Lite); see `WriteClock`."""
        return self._clock.latest

    def _stamped(self, result: T) -> T:
        """In a write's worker thread, after it returned: the clock moves past it."""
        if self.capabilities.write_timestamps:
            self._clock.mark(self._client, self._timeout)
        return result

    async def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return await anyio.to_thread.run_sync(lambda: self._reloading(fn))
        except BackendError:
            raise
        except Exception as e:  # pymilvus raises many unrelated types; translate them all here
            if self._identity is not None and collection_gone(e):
                gone = await self._identity.gone(self._collection)
                logger.warning("Milvus %s failed: collection %r is gone: %s", what, self._collection, gone)
                raise gone from e
            unavailable = connection_problem(e, self._uri, self._timeout)
            if unavailable is not None:
                logger.warning("Milvus %s failed: %s", what, unavailable)
                raise StoreUnavailable(f"The vector store failed to {what}: {unavailable}") from e
            logger.exception("Milvus %s failed", what)
            raise BackendError(f"The vector store failed to {what}: {short(e)}") from e

    def _reloading(self, fn: Callable[[], T]) -> T:
        """Run `fn`; if a restarted server has not loaded the collection again, load it and retry once."""
        from pymilvus import MilvusException

        try:
            return fn()
        except MilvusException as e:
            if e.code != COLLECTION_NOT_LOADED and "not loaded" not in str(e.message):
                raise
        if not self._parks:
            logger.warning("collection %r is not loaded (the server restarted?); loading it again", self._collection)
        with self._write_lock:
            self._load(self._collection)
        return fn()

    def _load(self, name: str) -> None:
        load_collection(self._client, name, Path(self._uri).expanduser() if self.capabilities.lite else None)
        self._loaded = True

    def _park(self) -> None:  # the caller holds the write lock
        if self._parks and self._lite is not None:
            self._lite.park(self._collection)
            self._loaded = False

    async def _write(self, fn: Callable[[], T], what: str) -> T:
        def locked() -> T:
            with self._write_lock:
                return fn()

        return await self._call(locked, what)

    async def _read(self, fn: Callable[[], T], what: str) -> T:
        # On Lite a search running while a flush moves rows to a segment can miss them (seen: 0 hits
        # in ~7% of searches racing a flush), so reads exclude writes there; they share with each other.
        if not self.capabilities.lite:
            return await self._call(fn, what)

        def shared() -> T:
            while True:
                if self._parks and not self._loaded:
                    with self._write_lock:
                        if not self._loaded:
                            self._load(self._collection)
                with self._write_lock.shared():
                    if self._loaded or not self._parks:  # a flush may have parked it before this lock
                        return fn()

        return await self._call(shared, what)

    async def open_reads(self, model_id: str, dimensions: int) -> bool:
        return False  # searches need the collection: `open`

    async def open(self, model_id: str, dimensions: int) -> None:
        if self._client is None:
            await anyio.to_thread.run_sync(self._connect)
        await self._open_collection(model_id, dimensions)

    async def _open_collection(self, model_id: str, dimensions: int) -> None:
        """Check that the collection is this store's (`identity`), then create, check or stamp it, and load it."""
        name = self._collection

        def describe() -> dict[str, Any] | None:
            return self._client.describe_collection(name) if self._client.has_collection(name) else None

        def rows() -> int:
            return int(self._client.get_collection_stats(name).get("row_count", 0))

        described = await self._call(describe, "open the collection")
        properties = None if described is None else dict(described.get("properties") or {})
        stamp: dict[str, str] = {}
        if self._identity is not None and (properties is None or PROP_EMBEDDER in properties):
            stamp = await self._identity.claim(name, properties, lambda: self._call(rows, "count the rows"))
        await self._call(lambda: self._prepare(model_id, dimensions, described, stamp), "open the collection")

    def _connect(self) -> None:
        lite = self.capabilities.lite
        uri = self._uri
        if lite:
            from milvus_memory_mcp.stores.lite import LiteServer

            # Lite's own server manager would listen on a TCP port of 127.0.0.1 that every local
            # account can reach; this one is a Unix socket private to the owner (stores/lite.py).
            self._lite = LiteServer.start(Path(self._uri), parking=self._parks)
            uri = self._lite.uri
        from pymilvus import MilvusClient

        options: dict[str, Any] = {} if lite else {"dedicated": True, "db_name": self._db_name or ""}
        try:
            client = MilvusClient(uri=uri, token=self._token or "", timeout=self._timeout, **options)
            bounded = Deadline(client, self._timeout)
            version = bounded.get_server_version()
        except Exception as e:  # connection errors come as several pymilvus types
            self._release_lite()
            problem = connection_problem(e, self._uri, self._timeout) or short(e)
            raise StoreUnavailable(f"Could not connect to Milvus at {self._uri}: {problem}") from e
        self._client = bounded
        self.capabilities = Capabilities.detect(self._uri, version)
        logger.info("connected to %s: %s", self._uri, self.capabilities.describe())

    def _prepare(self, model_id: str, dimensions: int, described: dict[str, Any] | None, stamp: dict[str, str]) -> None:
        c = self._client
        name = self._collection
        if described is not None:
            check_signature(name, described, model_id, dimensions)
            if stamp:  # made by an earlier release: now this store's (stores/identity.py)
                c.alter_collection_properties(name, stamp)
            self.tenancy = (described.get("properties") or {}).get(PROP_TENANCY, "scalar_index")
            fields = {f["name"] for f in described.get("fields") or []}
            self.keyword_search = SPARSE_FIELD in fields and self.capabilities.bm25
            self.stale_schema = SPARSE_FIELD not in fields and self.capabilities.bm25
            if not self.keyword_search and not self.stale_schema:
                logger.info("collection %r: this Milvus has no BM25 full-text search; search is dense only", name)
        else:
            self._create(model_id, dimensions)
        if not self._parks:  # else a read loads it first (`_read`)
            self._load(name)
        if self.capabilities.flush_after_writes:
            with self._write_lock:
                # A Lite process killed between saving a flush and deleting its write-ahead log leaves
                # records that Lite 3.2.2 replays with sequence numbers below the saved one; its next
                # flush then fails ("current_seq is monotonic") on every open. A delete of an id no
                # memory has takes the next sequence number, past them, so the flush goes through.
                c.delete(name, ids=[SEQUENCE_MARK_ID])
                c.flush(name)
        self._stamped(None)  # covers every write made before this process opened the collection

    def use_collection(self, name: str) -> None:
        """The collection `open` opens (the active one, server/core/reembed.py); no I/O."""
        self._collection = name

    async def sibling(self, collection: str, model_id: str, dimensions: int) -> MilvusStore:
        """Another collection on this open connection, made or checked for this embedder and loaded."""
        other = copy.copy(self)  # the client, its lock and the capabilities are shared
        other._collection, other._borrowed, other._lite, other.refused = collection, True, None, {}
        other._unflushed, other._durable = set(), set()
        other._parks = False  # loaded, as it has no Lite server of its own to park it
        await other._open_collection(model_id, dimensions)
        return other

    async def has_collection(self, name: str) -> bool:
        return bool(await self._read(lambda: self._client.has_collection(name), "list collections"))

    async def drop_collection(self, name: str) -> None:
        """Drop another collection of this engine, if it exists and is not another memory store's."""

        def run() -> None:
            with self._write_lock:
                if not self._client.has_collection(name):
                    return
                properties = self._client.describe_collection(name).get("properties") or {}
                if self._identity is not None and not self._identity.owned(properties):
                    logger.warning("collection %r belongs to another memory store: not dropped", name)
                    return
                self._client.drop_collection(name)

        await self._call(run, "drop a collection")

    async def recreate(self, model_id: str, dimensions: int) -> None:
        """Drop the collection and create it anew with the current schema (empty); see `stale_schema`."""

        def run() -> None:
            with self._write_lock:
                self._client.drop_collection(self._collection)
                self._create(model_id, dimensions)
                self._client.load_collection(self._collection)
            self.stale_schema = False

        await self._call(run, "rebuild the collection")

    def _create(self, model_id: str, dimensions: int) -> None:
        # user_id as partition key where the engine supports it (a search then reads one user's
        # partition only); otherwise scope fields are filtered through a scalar index.
        wanted = self.capabilities.partition_key if self._partition_key is None else self._partition_key
        tenancy = "partition_key" if wanted and self._num_partitions > 0 else "scalar_index"
        stamp = self._identity.stamp() if self._identity is not None else {}
        name, model, partitions = self._collection, (model_id, dimensions), self._num_partitions
        create_collection(self._client, name, self.capabilities, model, tenancy, partitions, stamp)
        self.tenancy = tenancy
        self.keyword_search = self.capabilities.bm25

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self._borrowed:
            await anyio.to_thread.run_sync(client.close)
            if self.capabilities.lite:
                await anyio.to_thread.run_sync(self._release_lite)

    def _release_lite(self) -> None:
        # Stop Milvus Lite's in-process server and close its data dir, so that the file is closed
        # cleanly and another process (a restart, doctor) can open it.
        lite, self._lite = self._lite, None
        if lite is not None:
            with self._write_lock:
                lite.close()

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        """Store `rows`. A row whose data the engine refuses does not hold back the others: it is
        skipped and kept in `refused` (with the reason) until a later write of its id succeeds."""
        if not rows:
            return
        data = [to_row(r, v, self.keyword_search) for r, v in rows]
        refused = await self._write(
            lambda: self._stamped(upsert_each_good(self._client, self._collection, data)), "store the memory"
        )
        for row in data:
            self.refused.pop(row["id"], None)
        for memory_id, reason in refused.items():
            logger.error(
                "Milvus refused the row of memory %s (%s); it stays in the history database, pending, "
                "and `doctor` reports it: update or delete that memory",
                memory_id,
                reason,
            )
        self.refused.update(refused)
        self._written(row["id"] for row in data if row["id"] not in refused)

    async def delete(self, ids: list[str]) -> None:
        if ids:
            delete = self._client.delete
            await self._write(lambda: self._stamped(delete(self._collection, ids=ids)), "delete the memory")
            for memory_id in ids:
                self.refused.pop(memory_id, None)
            self._written(ids)

    def _written(self, ids: Iterable[str]) -> None:
        if self.needs_flush:
            self._unflushed.update(ids)

    async def flush(self) -> None:
        """Make the writes so far durable (on Lite they are only now: see `take_durable`).

        Milvus Lite drops the rows not yet flushed when a flush fails (seen with a full disk), so
        after a failure those writes are not durable: their pending marks stay and the write
        protocol re-applies them from SQLite."""
        written, self._unflushed = self._unflushed, set()

        await self._write(lambda: self._client.flush(self._collection), "flush")
        self._durable |= written

    async def prepare_flush(self) -> None:
        if self._parks and self._lite is not None and not self._lite.holds(self._collection):
            await self._write(lambda: self._client.describe_collection(self._collection), "read the collection")

    async def idle(self) -> None:
        if self._parks and self._lite is not None:
            await self._write(self._park, "give back the collection's memory")

    def take_durable(self) -> set[str]:
        durable, self._durable = self._durable, set()
        return durable

    async def search(self, vector: list[float], where: filters.And, limit: int) -> list[tuple[MemoryRecord, float]]:
        if self.capabilities.index_type == "FLAT":  # exact
            return await self._search(vector, "vector", "COSINE", where, limit, "search")
        # A server's approximate index (AUTOINDEX) searched under a scope filter misses close memories
        # when asked for few: LoCoMo dev dense R@10 on Milvus 2.3.5 was 0.500 asking for 10, 0.526
        # asking for 100 (Lite, exact: 0.529; bench/retrieval.py --milvus-server). Also near-duplicates.
        hits = await self._search(vector, "vector", "COSINE", where, max(limit, APPROXIMATE_POOL), "search")
        return hits[:limit]

    async def search_keywords(self, text: str, where: filters.And, limit: int) -> list[tuple[MemoryRecord, float]]:
        """BM25 full-text search (only when `keyword_search`); score higher is better, >= 0."""
        words = analyse(text)
        if not words:
            return []  # only stop words: nothing for BM25 to match
        return await self._search(words, SPARSE_FIELD, "BM25", where, limit, "search by keywords")

    async def _search(
        self, data: Any, field: str, metric: str, where: filters.And, limit: int, what: str
    ) -> list[tuple[MemoryRecord, float]]:
        expr = filters.to_milvus(where)
        if self.capabilities.write_timestamps:
            consistency = await self._clock.search_args(scope_terms(filters.pinned_scope(where)))
        else:
            consistency = {}

        def run() -> list[tuple[MemoryRecord, float]]:
            hits = self._client.search(
                self._collection,
                data=[data],
                anns_field=field,
                filter=expr,
                limit=limit,
                output_fields=OUTPUT_FIELDS,
                search_params={"metric_type": metric},
                **consistency,
            )
            # Milvus Lite reports BM25 negated (a server reports it positive); the score itself is >= 0.
            score = abs if metric == "BM25" else float
            return [(from_row(h["entity"] | {"id": h["id"]}), float(score(h["distance"]))) for h in hits[0]]

        return await self._read(run, what)

    async def get(self, ids: list[str]) -> list[MemoryRecord]:
        if not ids:
            return []
        rows = await self._read(
            lambda: self._client.get(self._collection, ids=ids, output_fields=OUTPUT_FIELDS), "read memories"
        )
        return [from_row(r) for r in rows]

    async def vectors_of(self, ids: list[str]) -> dict[str, list[float]]:
        """The stored vectors of these memories (those the collection has)."""
        if not ids:
            return {}
        rows = await self._read(
            lambda: self._client.get(self._collection, ids=ids, output_fields=["id", "vector"]), "read vectors"
        )
        return {r["id"]: [float(x) for x in r["vector"]] for r in rows}

    async def ids(self) -> list[str]:
        return await self._read(lambda: all_ids(self._client, self._collection), "list ids")

    @property
    def ranks_by_stored_keywords(self) -> bool:
        return self.keyword_search

    async def stale_keywords(self, records: list[MemoryRecord]) -> list[str]:
        """Ids of these memories whose `keywords` field is not what this release's analysis makes of
        them (written by an older one); none on a collection without the field."""
        if not self.keyword_search or not records:
            return []
        ids = [r.id for r in records]
        rows = await self._read(
            lambda: self._client.get(self._collection, ids=ids, output_fields=["id", KEYWORD_FIELD]), "read keywords"
        )
        stored = {r["id"]: r.get(KEYWORD_FIELD) for r in rows}
        return [r.id for r in records if r.id in stored and stored[r.id] != keyword_text(r)]
