"""Milvus (Lite file or server) through pymilvus's sync client, run in worker threads.

One process-wide lock serialises every write and flush: concurrent writes through one Milvus
Lite client corrupt its write-ahead log (DESIGN.md). Reads run concurrently.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import anyio

from ..errors import BackendError, ConfigurationError, StoreUnavailable
from ..records import SCOPE_FIELDS, MemoryRecord

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
# Recorded with the collection so that another embedder is refused when it opens it.
PROP_EMBEDDER = "memory.embedder"
PROP_DIMS = "memory.dims"
PROP_SCHEMA = "memory.schema"
MAX_TEXT_BYTES = 65535
OUTPUT_FIELDS = ["id", "memory", "hash", "metadata", *SCOPE_FIELDS, "created_at", "updated_at"]
QUERY_BATCH = 1000


@dataclass(frozen=True)
class Capabilities:
    """What the connected engine can do; the only place Lite and server differ."""

    lite: bool
    index_type: str
    flush_after_writes: bool

    @classmethod
    def detect(cls, uri: str) -> Capabilities:
        lite = not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))
        # FLAT on Lite: its HNSW combined with a scope filter loses results (DESIGN.md).
        return cls(lite=lite, index_type="FLAT" if lite else "AUTOINDEX", flush_after_writes=lite)


def to_row(record: MemoryRecord, vector: list[float]) -> dict[str, Any]:
    return {
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
    def __init__(self, uri: str, collection: str, token: str | None = None) -> None:
        self._uri = uri
        self._collection = collection
        self._token = token
        self._client: Any = None
        self._write_lock = threading.Lock()
        self.capabilities = Capabilities.detect(uri)

    @property
    def needs_flush(self) -> bool:
        return self.capabilities.flush_after_writes

    async def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return await anyio.to_thread.run_sync(fn)
        except BackendError:
            raise
        except Exception as e:  # pymilvus raises many unrelated types; translate them all here
            logger.exception("Milvus %s failed", what)
            raise BackendError(f"The vector store failed to {what}: {_short(e)}") from e

    async def _write(self, fn: Callable[[], T], what: str) -> T:
        def locked() -> T:
            with self._write_lock:
                return fn()

        return await self._call(locked, what)

    async def open(self, model_id: str, dimensions: int) -> None:
        if self._client is None:
            await anyio.to_thread.run_sync(self._connect)
        await self._call(lambda: self._prepare(model_id, dimensions), "open the collection")

    def _connect(self) -> None:
        from pymilvus import MilvusClient

        if self.capabilities.lite:
            folder = Path(self._uri).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(
                    f"Cannot use {folder} for the Milvus Lite file: {e.strerror or e}. "
                    "Set MEMORY_DATA_DIR or MEMORY_MILVUS_URI to a writable directory."
                ) from e
        try:
            self._client = MilvusClient(uri=self._uri, token=self._token or "", timeout=30)
        except Exception as e:  # connection errors come as several pymilvus types
            text = str(e)
            if self.capabilities.lite and "Open local milvus failed" in text:
                raise StoreUnavailable(
                    f"Could not open the Milvus Lite file {self._uri}: another process probably holds it "
                    "(only one process may open a Milvus Lite file). Stop the other server or set "
                    "MEMORY_DATA_DIR / MEMORY_MILVUS_URI to another location."
                ) from e
            raise StoreUnavailable(f"Could not connect to Milvus at {self._uri}: {_short(e)}") from e

    def _prepare(self, model_id: str, dimensions: int) -> None:
        c = self._client
        name = self._collection
        if c.has_collection(name):
            self._check_signature(c.describe_collection(name), model_id, dimensions)
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

    def _create(self, model_id: str, dimensions: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description="milvus-memory-mcp memories"
        )
        schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimensions)
        schema.add_field("memory", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("hash", DataType.VARCHAR, max_length=64)
        for field in SCOPE_FIELDS:
            schema.add_field(field, DataType.VARCHAR, max_length=128)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("updated_at", DataType.INT64)
        properties = {PROP_EMBEDDER: model_id, PROP_DIMS: str(dimensions), PROP_SCHEMA: str(SCHEMA_VERSION)}
        self._client.create_collection(
            self._collection, schema=schema, consistency_level="Strong", properties=properties
        )
        # Indexes one by one with sync=False: pymilvus otherwise sleeps 0.5 s per index before polling.
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.capabilities.index_type, metric_type="COSINE")
        self._client.create_index(self._collection, index, sync=False)
        for field in SCOPE_FIELDS:
            scalar = self._client.prepare_index_params()
            scalar.add_index(field_name=field, index_type="INVERTED")
            try:
                self._client.create_index(self._collection, scalar, sync=False)
            except Exception as e:  # engines without INVERTED (Milvus 2.3) filter without an index
                logger.info("no INVERTED index on %s (%s); filtering scans", field, _short(e))
        logger.info("created collection %r (%s, %d dims)", self._collection, model_id, dimensions)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)
            if self.capabilities.lite:
                await anyio.to_thread.run_sync(self._release_lite)

    def _release_lite(self) -> None:
        # Closing the client leaves Milvus Lite's in-process server running and its data dir locked
        # until exit; stop it so the file is closed cleanly and another process (a restart, doctor)
        # can open it.
        from milvus_lite.server_manager import server_manager_instance

        with self._write_lock:
            server_manager_instance.release_server(str(Path(self._uri).expanduser()))

    async def upsert(self, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
        if rows:
            data = [to_row(r, v) for r, v in rows]
            await self._write(lambda: self._client.upsert(self._collection, data), "store the memory")

    async def delete(self, ids: list[str]) -> None:
        if ids:
            await self._write(lambda: self._client.delete(self._collection, ids=ids), "delete the memory")

    async def flush(self) -> None:
        await self._write(lambda: self._client.flush(self._collection), "flush")

    async def search(self, vector: list[float], expr: str, limit: int) -> list[tuple[MemoryRecord, float]]:
        def run() -> list[tuple[MemoryRecord, float]]:
            hits = self._client.search(
                self._collection,
                data=[vector],
                filter=expr,
                limit=limit,
                output_fields=OUTPUT_FIELDS,
                search_params={"metric_type": "COSINE"},
            )
            return [(from_row(h["entity"] | {"id": h["id"]}), float(h["distance"])) for h in hits[0]]

        return await self._call(run, "search")

    async def get(self, ids: list[str]) -> list[MemoryRecord]:
        if not ids:
            return []
        rows = await self._call(
            lambda: self._client.get(self._collection, ids=ids, output_fields=OUTPUT_FIELDS), "read memories"
        )
        return [from_row(r) for r in rows]

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

        return await self._call(run, "list ids")


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]
