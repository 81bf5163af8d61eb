"""The collection's schema: its fields, the properties that sign it, and rows in and out of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.keywords import BM25_B, BM25_K1, memory_words
from milvus_memory_mcp.records import SCOPE_FIELDS, MemoryRecord
from milvus_memory_mcp.stores.capabilities import Capabilities

logger = logging.getLogger(__name__)

# 2: adds `keywords` (analysed text) and `sparse` (its BM25 vector, made by Milvus) for keyword search.
SCHEMA_VERSION = 2
# Recorded with the collection so that another embedder is refused when it opens it.
PROP_EMBEDDER = "memory.embedder"
PROP_DIMS = "memory.dims"
PROP_SCHEMA = "memory.schema"
PROP_TENANCY = "memory.tenancy"  # how scopes are separated: "partition_key" or "scalar_index"
# The memory store a collection belongs to: stores/identity.py (`memory.store`, `memory.made_for`).
MAX_TEXT_BYTES = 65535
KEYWORD_FIELD = "keywords"
SPARSE_FIELD = "sparse"
# A Milvus 2.5+ server scores BM25 with its index's parameters, fixed when the index is built: a
# collection created before these were set keeps the server's defaults (k1 1.2, b 0.75).
BM25_PARAMS = {"bm25_k1": BM25_K1, "bm25_b": BM25_B}
OUTPUT_FIELDS = ["id", "memory", "hash", "metadata", *SCOPE_FIELDS, "created_at", "updated_at"]


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
        row[KEYWORD_FIELD] = keyword_text(record)
    return row


def keyword_text(record: MemoryRecord) -> str:
    """What the `keywords` field holds for a memory: its words for BM25 (`keywords.memory_words`),
    cut to the field's size (a memory of the longest text with a context, or lower-cased into more
    bytes, could exceed it)."""
    return memory_words(record).encode()[:MAX_TEXT_BYTES].decode(errors="ignore")


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


def build_schema(dimensions: int, tenancy: str, bm25: bool) -> Any:
    """The pymilvus schema: id, vector, text, hash, scope, metadata, times (+ BM25 fields with `bm25`)."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description="milvus-memory-mcp memories"
    )
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimensions)
    schema.add_field("memory", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("hash", DataType.VARCHAR, max_length=64)
    for field in SCOPE_FIELDS:
        key = tenancy == "partition_key" and field == "user_id"
        schema.add_field(field, DataType.VARCHAR, max_length=128, is_partition_key=key)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("updated_at", DataType.INT64)
    if bm25:
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
    return schema


def search_indexes(client: Any, capabilities: Capabilities) -> Any:
    """The vector index's parameters, and the BM25 index's where the engine has BM25."""
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=capabilities.index_type, metric_type="COSINE")
    if capabilities.bm25:
        # pymilvus sends `params` flattened, as a server reads them; Milvus Lite reads only a nested
        # "params" entry (and otherwise scores with its defaults, k1 1.5 and b 0.75).
        params = {"params": BM25_PARAMS} if capabilities.lite else BM25_PARAMS
        index.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=params)
    return index


def create_indexes(client: Any, collection: str, capabilities: Capabilities) -> None:
    """The vector, BM25 and scope indexes, one by one with sync=False (pymilvus otherwise sleeps 0.5 s
    per index before polling)."""
    client.create_index(collection, search_indexes(client, capabilities), sync=False)
    # Scope fields: INVERTED where the engine has it, else its default scalar index (Trie on 2.3).
    scalar_type = "INVERTED" if capabilities.inverted_index else ""
    for field in SCOPE_FIELDS:
        scalar = client.prepare_index_params()
        scalar.add_index(field_name=field, index_type=scalar_type)
        client.create_index(collection, scalar, sync=False)


def create_collection(
    client: Any,
    name: str,
    capabilities: Capabilities,
    model: tuple[str, int],
    tenancy: str,
    num_partitions: int,
    stamp: dict[str, str] | None = None,
) -> None:
    """Create the collection for this embedder (`model`: its id and dimensions) and its indexes; `stamp`:
    the properties naming the memory store it belongs to (stores/identity.py)."""
    model_id, dimensions = model
    properties = {
        PROP_EMBEDDER: model_id,
        PROP_DIMS: str(dimensions),
        PROP_SCHEMA: str(SCHEMA_VERSION),
        PROP_TENANCY: tenancy,
        **(stamp or {}),
    }
    partitions = {"num_partitions": num_partitions} if tenancy == "partition_key" else {}
    client.create_collection(
        name,
        schema=build_schema(dimensions, tenancy, capabilities.bm25),
        consistency_level=capabilities.consistency,
        properties=properties,
        **partitions,
    )
    create_indexes(client, name, capabilities)
    logger.info(
        "created collection %r (%s, %d dims, %s, keyword search %s)",
        name,
        model_id,
        dimensions,
        tenancy,
        "on" if capabilities.bm25 else "off: this Milvus has no BM25",
    )


def check_signature(collection: str, described: dict[str, Any], model_id: str, dimensions: int) -> None:
    """Refuse a collection made by something else, or by another embedder (ConfigurationError)."""
    props = described.get("properties") or {}
    if PROP_EMBEDDER not in props:
        raise ConfigurationError(
            f"Collection {collection!r} exists but was not created by milvus-memory-mcp; "
            "set MEMORY_COLLECTION to another name."
        )
    made_by, made_dims = props[PROP_EMBEDDER], int(props.get(PROP_DIMS, -1))
    if made_by != model_id or made_dims != dimensions:
        raise ConfigurationError(
            f"Collection {collection!r} was created with embedder {made_by!r} ({made_dims} dims), "
            f"but the server is configured with {model_id!r} ({dimensions} dims). Vectors of different "
            f"models cannot be mixed: set MEMORY_EMBEDDER back to {made_by!r}, or move the stored memories to "
            "the new one with `milvus-memory-mcp reembed --embedder NEW` (run with the old MEMORY_EMBEDDER)."
        )


def drop_lite_indexes(lite_dir: Path, collection: str) -> bool:
    """Delete a collection's Milvus Lite index files; True if there were any.

    Milvus Lite 3.2.2 writes index files in place after committing a segment, so a process
    killed meanwhile leaves an empty or cut-off index file, and every later load fails ("No
    data left in file"). Indexes are derived from the data files, which Lite rebuilds.
    """
    files = [p for p in (lite_dir / "collections" / collection / "partitions").glob("*/indexes/*") if p.is_file()]
    for path in files:
        path.unlink()
    return bool(files)
