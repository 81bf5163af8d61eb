"""Milvus (Lite file or server) through pymilvus's sync client, run in worker threads.

One process-wide lock serialises every write and flush: concurrent writes through one Milvus
Lite client corrupt its write-ahead log (DESIGN.md). Reads run concurrently.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import anyio

from .. import filters
from ..errors import BackendError, ConfigurationError, StoreUnavailable
from ..keywords import analyse
from ..records import SCOPE_FIELDS, MemoryRecord

if TYPE_CHECKING:
    from .lite import LiteServer

logger = logging.getLogger(__name__)
T = TypeVar("T")

# 2: adds `keywords` (analysed text) and `sparse` (its BM25 vector, made by Milvus) for keyword search.
SCHEMA_VERSION = 2
# Recorded with the collection so that another embedder is refused when it opens it.
PROP_EMBEDDER = "memory.embedder"
PROP_DIMS = "memory.dims"
PROP_SCHEMA = "memory.schema"
PROP_TENANCY = "memory.tenancy"  # how scopes are separated: "partition_key" or "scalar_index"
MAX_TEXT_BYTES = 65535
KEYWORD_FIELD = "keywords"
SPARSE_FIELD = "sparse"
OUTPUT_FIELDS = ["id", "memory", "hash", "metadata", *SCOPE_FIELDS, "created_at", "updated_at"]
QUERY_BATCH = 1000
COLLECTION_NOT_LOADED = 101  # Milvus error code


@dataclass(frozen=True)
class Capabilities:
    """What the connected engine can do; the only place Lite and server differ.

    Known from the URI before connecting (Lite or server), refined from the server's version at
    connect time. Unknown version strings (e.g. a managed service) count as a current server.
    """

    lite: bool
    version: tuple[int, int, int] | None = None
    index_type: str = "AUTOINDEX"  # FLAT on Lite: its HNSW with a scope filter loses results (DESIGN.md)
    consistency: str = "Strong"  # a server defaults to Bounded: a new row would be invisible for ~0.3 s
    flush_after_writes: bool = False  # Lite converts unflushed rows on every search; a server seals by itself
    inverted_index: bool = True  # INVERTED scalar indexes: Milvus 2.4+, Lite
    filter_params: bool = True  # filter templates: Milvus 2.5+; Lite 3.2.2 rejects them
    bm25: bool = True  # built-in BM25 full-text functions: Milvus 2.5+, Lite
    partition_key: bool = True  # user_id as partition key: Milvus 2.4+ (2.3 upserts ignore it: milvus#30607)

    @classmethod
    def detect(cls, uri: str, server_version: str | None = None) -> Capabilities:
        if _is_lite(uri):
            return cls(
                lite=True,
                version=_parse_version(server_version),
                index_type="FLAT",
                flush_after_writes=True,
                filter_params=False,
                partition_key=False,
            )
        version = _parse_version(server_version)
        at_least = (lambda major, minor: version >= (major, minor, 0)) if version else (lambda major, minor: True)
        return cls(
            lite=False,
            version=version,
            inverted_index=at_least(2, 4),
            filter_params=at_least(2, 5),
            bm25=at_least(2, 5),
            partition_key=at_least(2, 4),
        )

    def describe(self) -> dict[str, object]:
        engine = "Milvus Lite" if self.lite else "Milvus server"
        version = ".".join(map(str, self.version)) if self.version else "unknown"
        out: dict[str, object] = {"engine": engine, "version": version}
        out.update({k: v for k, v in self.__dict__.items() if k not in ("lite", "version")})
        return out


def _is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _parse_version(text: str | None) -> tuple[int, int, int] | None:
    """'v2.3.5-lite' -> (2, 3, 5); 'milvus_lite-3.2.2' -> (3, 2, 2); None when there is no number."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def to_row(record: MemoryRecord, vector: list[float], keywords: bool = False) -> dict[str, Any]:
    row = {
        "id": record.id,
        "vector": vector,
        "memory": record.memory,
        "hash": record.hash,
        "metadata": record.metadata,
        "user_id": record.user_id or "",
        "agent_id": record.agent_id or "",
        "run_id": record.run_id or "",
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if keywords:
        row[KEYWORD_FIELD] = analyse(record.memory)
    return row


def from_row(row: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(
        id=row["id"],
        memory=row["memory"],
        hash=row["hash"],
        metadata=dict(row.get("metadata") or {}),
        user_id=row.get("user_id") or None,
        agent_id=row.get("agent_id") or None,
        run_id=row.get("run_id") or None,
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
    )


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
    ) -> None:
        """`timeout` bounds each call including pymilvus's own retries; `partition_key` None = where supported."""
        self._uri = uri
        self._collection = collection
        self._token = token
        self._db_name = db_name
        self._timeout = timeout
        self._num_partitions = num_partitions
        self._partition_key = partition_key
        self._client: Any = None
        self._lite: LiteServer | None = None
        self._write_lock = _ReadWriteLock()
        self.capabilities = Capabilities.detect(uri)  # refined from the server's version by open()
        self.tenancy: str | None = None  # recorded with the collection; known after open()
        # Set by open(): whether the collection has the BM25 field, and whether it was made before
        # keyword search although the engine has it (the service then rebuilds it from SQLite).
        self.keyword_search = False
        self.stale_schema = False

    @property
    def needs_flush(self) -> bool:
        return self.capabilities.flush_after_writes

    async def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return await anyio.to_thread.run_sync(lambda: self._reloading(fn))
        except BackendError:
            raise
        except Exception as e:  # pymilvus raises many unrelated types; translate them all here
            unavailable = _connection_problem(e, self._uri, self._timeout)
            if unavailable is not None:
                logger.warning("Milvus %s failed: %s", what, unavailable)
                raise StoreUnavailable(f"The vector store failed to {what}: {unavailable}") from e
            logger.exception("Milvus %s failed", what)
            raise BackendError(f"The vector store failed to {what}: {_short(e)}") from e

    def _reloading(self, fn: Callable[[], T]) -> T:
        """Run `fn`; if a restarted server has not loaded the collection again, load it and retry once."""
        from pymilvus import MilvusException

        try:
            return fn()
        except MilvusException as e:
            if e.code != COLLECTION_NOT_LOADED and "not loaded" not in str(e.message):
                raise
        logger.warning("collection %r is not loaded (the server restarted?); loading it again", self._collection)
        self._client.load_collection(self._collection)
        return fn()

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
            with self._write_lock.shared():
                return fn()

        return await self._call(shared, what)

    async def open(self, model_id: str, dimensions: int) -> None:
        if self._client is None:
            await anyio.to_thread.run_sync(self._connect)
        await self._call(lambda: self._prepare(model_id, dimensions), "open the collection")

    def _connect(self) -> None:
        lite = self.capabilities.lite
        if lite:
            # Milvus Lite 3.2.2 imports faiss (31 MB of RSS) for HNSW / IVF indexes only, and falls back
            # to numpy when it is absent; on Lite this store uses FLAT (its HNSW loses results under a
            # scope filter), so the import is blocked unless something else loaded faiss already.
            sys.modules.setdefault("faiss", None)  # type: ignore[assignment]
        from pymilvus import MilvusClient

        uri = self._uri
        if lite:
            folder = Path(self._uri).expanduser().parent
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(
                    f"Cannot use {folder} for the Milvus Lite file: {e.strerror or e}. "
                    "Set MEMORY_DATA_DIR or MEMORY_MILVUS_URI to a writable directory."
                ) from e
            from .lite import LiteServer

            # Lite's own server manager would listen on a TCP port of 127.0.0.1 that every local
            # account can reach; this one is a Unix socket private to the owner (stores/lite.py).
            self._lite = LiteServer.start(Path(self._uri))
            uri = self._lite.uri
        options: dict[str, Any] = {} if lite else {"dedicated": True, "db_name": self._db_name or ""}
        try:
            client = MilvusClient(uri=uri, token=self._token or "", timeout=self._timeout, **options)
            bounded = _Deadline(client, self._timeout)
            version = bounded.get_server_version()
        except Exception as e:  # connection errors come as several pymilvus types
            self._release_lite()
            problem = _connection_problem(e, self._uri, self._timeout) or _short(e)
            raise StoreUnavailable(f"Could not connect to Milvus at {self._uri}: {problem}") from e
        self._client = bounded
        self.capabilities = Capabilities.detect(self._uri, version)
        logger.info("connected to %s: %s", self._uri, self.capabilities.describe())

    def _prepare(self, model_id: str, dimensions: int) -> None:
        c = self._client
        name = self._collection
        if c.has_collection(name):
            described = c.describe_collection(name)
            self._check_signature(described, model_id, dimensions)
            self.tenancy = (described.get("properties") or {}).get(PROP_TENANCY, "scalar_index")
            fields = {f["name"] for f in described.get("fields") or []}
            self.keyword_search = SPARSE_FIELD in fields and self.capabilities.bm25
            self.stale_schema = SPARSE_FIELD not in fields and self.capabilities.bm25
            if not self.keyword_search and not self.stale_schema:
                logger.info("collection %r: this Milvus has no BM25 full-text search; search is dense only", name)
        else:
            self._create(model_id, dimensions)
        try:
            c.load_collection(name)
        except Exception as e:  # pymilvus raises MilvusException; only the Lite case below is handled
            if not (self.capabilities.lite and self._drop_lite_indexes()):
                raise
            logger.warning("Milvus Lite could not load %r (%s); rebuilt its indexes from the data", name, _short(e))
            c.load_collection(name)
        if self.capabilities.flush_after_writes:
            with self._write_lock:
                c.flush(name)

    def _drop_lite_indexes(self) -> bool:
        """Delete the collection's Milvus Lite index files; True if there were any.

        Milvus Lite 3.2.2 writes index files in place after committing a segment, so a process
        killed meanwhile leaves an empty or cut-off index file, and every later load fails ("No
        data left in file"). Indexes are derived from the data files, which Lite rebuilds.
        """
        partitions = Path(self._uri).expanduser() / "collections" / self._collection / "partitions"
        files = [p for p in partitions.glob("*/indexes/*") if p.is_file()]
        for path in files:
            path.unlink()
        return bool(files)

    def _check_signature(self, described: dict[str, Any], model_id: str, dimensions: int) -> None:
        props = described.get("properties") or {}
        if PROP_EMBEDDER not in props:
            raise ConfigurationError(
                f"Collection {self._collection!r} exists but was not created by milvus-memory-mcp; "
                "set MEMORY_COLLECTION to another name."
            )
        made_by, made_dims = props[PROP_EMBEDDER], int(props.get(PROP_DIMS, -1))
        if made_by != model_id or made_dims != dimensions:
            raise ConfigurationError(
                f"Collection {self._collection!r} was created with embedder {made_by!r} ({made_dims} dims), "
                f"but the server is configured with {model_id!r} ({dimensions} dims). Vectors of different "
                "models cannot be mixed: switch MEMORY_EMBEDDER back, or use a new MEMORY_COLLECTION or "
                "MEMORY_DATA_DIR for the new embedder."
            )

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
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description="milvus-memory-mcp memories"
        )
        schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimensions)
        schema.add_field("memory", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("hash", DataType.VARCHAR, max_length=64)
        tenancy = self._choose_tenancy()
        for field in SCOPE_FIELDS:
            key = tenancy == "partition_key" and field == "user_id"
            schema.add_field(field, DataType.VARCHAR, max_length=128, is_partition_key=key)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("updated_at", DataType.INT64)
        if self.capabilities.bm25:
            schema.add_field(KEYWORD_FIELD, DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True)
            schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="keywords_bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=[KEYWORD_FIELD],
                    output_field_names=[SPARSE_FIELD],
                )
            )
        properties = {
            PROP_EMBEDDER: model_id,
            PROP_DIMS: str(dimensions),
            PROP_SCHEMA: str(SCHEMA_VERSION),
            PROP_TENANCY: tenancy,
        }
        partitions = {"num_partitions": self._num_partitions} if tenancy == "partition_key" else {}
        self._client.create_collection(
            self._collection,
            schema=schema,
            consistency_level=self.capabilities.consistency,
            properties=properties,
            **partitions,
        )
        self.tenancy = tenancy
        # Indexes one by one with sync=False: pymilvus otherwise sleeps 0.5 s per index before polling.
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.capabilities.index_type, metric_type="COSINE")
        if self.capabilities.bm25:
            index.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        self._client.create_index(self._collection, index, sync=False)
        # Scope fields: INVERTED where the engine has it, else its default scalar index (Trie on 2.3).
        scalar_type = "INVERTED" if self.capabilities.inverted_index else ""
        for field in SCOPE_FIELDS:
            scalar = self._client.prepare_index_params()
            scalar.add_index(field_name=field, index_type=scalar_type)
            self._client.create_index(self._collection, scalar, sync=False)
        self.keyword_search = self.capabilities.bm25
        logger.info(
            "created collection %r (%s, %d dims, %s, keyword search %s)",
            self._collection,
            model_id,
            dimensions,
            tenancy,
            "on" if self.keyword_search else "off: this Milvus has no BM25",
        )

    def _choose_tenancy(self) -> str:
        """user_id as partition key where the engine supports it (a search then reads one user's
        partition only); otherwise scope fields are filtered through a scalar index."""
        wanted = self.capabilities.partition_key if self._partition_key is None else self._partition_key
        return "partition_key" if wanted and self._num_partitions > 0 else "scalar_index"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
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
        if rows:
            data = [to_row(r, v, self.keyword_search) for r, v in rows]
            await self._write(lambda: self._client.upsert(self._collection, data), "store the memory")

    async def delete(self, ids: list[str]) -> None:
        if ids:
            await self._write(lambda: self._client.delete(self._collection, ids=ids), "delete the memory")

    async def flush(self) -> None:
        await self._write(lambda: self._client.flush(self._collection), "flush")

    async def search(self, vector: list[float], where: filters.And, limit: int) -> list[tuple[MemoryRecord, float]]:
        expr = filters.to_milvus(where)

        def run() -> list[tuple[MemoryRecord, float]]:
            hits = self._client.search(
                self._collection,
                data=[vector],
                anns_field="vector",
                filter=expr,
                limit=limit,
                output_fields=OUTPUT_FIELDS,
                search_params={"metric_type": "COSINE"},
            )
            return [(from_row(h["entity"] | {"id": h["id"]}), float(h["distance"])) for h in hits[0]]

        return await self._read(run, "search")

    async def search_keywords(self, text: str, where: filters.And, limit: int) -> list[tuple[MemoryRecord, float]]:
        """BM25 full-text search (only when `keyword_search`); score higher is better, >= 0."""
        expr = filters.to_milvus(where)
        words = analyse(text)
        if not words:
            return []  # only stop words: nothing for BM25 to match

        def run() -> list[tuple[MemoryRecord, float]]:
            hits = self._client.search(
                self._collection,
                data=[words],
                anns_field=SPARSE_FIELD,
                filter=expr,
                limit=limit,
                output_fields=OUTPUT_FIELDS,
                search_params={"metric_type": "BM25"},
            )
            # Milvus Lite reports BM25 negated (a server reports it positive); the score itself is >= 0.
            return [(from_row(h["entity"] | {"id": h["id"]}), abs(float(h["distance"]))) for h in hits[0]]

        return await self._read(run, "search by keywords")

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
        def run() -> list[str]:
            out: list[str] = []
            it = self._client.query_iterator(self._collection, batch_size=QUERY_BATCH, filter="", output_fields=["id"])
            try:
                while batch := it.next():
                    out.extend(r["id"] for r in batch)
            finally:
                it.close()
            return out

        return await self._read(run, "list ids")


class _Deadline:
    """The pymilvus client with a deadline on every call.

    Without `timeout`, pymilvus retries a failing call up to 75 times with back-off (minutes); with
    it, its retries on transient errors (UNAVAILABLE, rate limits) stop when the deadline passes.
    """

    _NO_DEADLINE = frozenset({"prepare_index_params", "create_schema", "close", "get_server_type"})
    # Collection set-up waits for the server (loading takes seconds on a server): a longer deadline.
    _ADMIN = frozenset({"create_collection", "create_index", "load_collection", "flush", "drop_collection"})
    ADMIN_TIMEOUT = 120.0

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self._NO_DEADLINE or not callable(attr):
            return attr
        deadline = max(self._timeout, self.ADMIN_TIMEOUT) if name in self._ADMIN else self._timeout

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", deadline)
            return attr(*args, **kwargs)

        return call


def _connection_problem(e: BaseException, uri: str, timeout: float) -> str | None:
    """A message naming the cause when `e` is a connection, credential or TLS problem, else None."""
    import grpc

    chain: list[BaseException] = []
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = " ".join(str(x) for x in chain)
    rpc = next((x for x in chain if isinstance(x, grpc.RpcError)), None)
    code = rpc.code() if rpc is not None and hasattr(rpc, "code") else None  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or "auth check fail" in text:
        return (
            f"Milvus refused the credentials ({_rpc_details(rpc) or 'authentication failed'}). "
            "Set MEMORY_MILVUS_TOKEN to 'user:password' or an API key that this server accepts."
        )
    if re.search(r"database\b.{0,80}not found", text):
        return "the database named by MEMORY_MILVUS_DB_NAME does not exist on this server; create it or unset it."
    if re.search(r"tls|ssl|handshake|certificate", text, re.IGNORECASE):
        return (
            f"the TLS handshake failed ({_rpc_details(rpc) or 'TLS error'}). Use https:// only for a server "
            "with TLS and http:// for one without; check the server's certificate."
        )
    if "resolving" in text or "Domain name not found" in text or "Name or service not known" in text:
        return f"the host in {uri} could not be resolved; check MEMORY_MILVUS_URI."
    if code == grpc.StatusCode.UNAVAILABLE or re.search(r"UNAVAILABLE|Fail connecting to server", text):
        return (
            f"Milvus at {uri} is unreachable ({_rpc_details(rpc) or 'connection failed'}). Check that the server "
            "is running and MEMORY_MILVUS_URI; calls recover by themselves once it is back."
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or re.search(r"Retry timeout|DEADLINE_EXCEEDED", text):
        return f"Milvus at {uri} did not answer within {timeout:g} s (MEMORY_MILVUS_TIMEOUT); try again."
    return None


def _rpc_details(rpc: BaseException | None) -> str:
    details = getattr(rpc, "details", None)
    text = details() if callable(details) else ""
    return str(text or "").strip()[:200]


class _ReadWriteLock:
    """`with lock:` is exclusive (writes, flushes); `with lock.shared():` admits many readers at once.
    A waiting writer holds back new readers, so a stream of searches cannot starve a flush."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def __enter__(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]
