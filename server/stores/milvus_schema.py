"""The collection's schema: its fields, the properties that sign it, and rows in and out of it."""

from __future__ import annotations

from typing import Any

from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import SCOPE_FIELDS, MemoryRecord
from milvus_memory_mcp.stores.capabilities import Capabilities

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


def create_indexes(client: Any, collection: str, capabilities: Capabilities) -> None:
    """The vector, BM25 and scope indexes, one by one with sync=False (pymilvus otherwise sleeps 0.5 s
    per index before polling)."""
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=capabilities.index_type, metric_type="COSINE")
    if capabilities.bm25:
        index.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_index(collection, index, sync=False)
    # Scope fields: INVERTED where the engine has it, else its default scalar index (Trie on 2.3).
    scalar_type = "INVERTED" if capabilities.inverted_index else ""
    for field in SCOPE_FIELDS:
        scalar = client.prepare_index_params()
        scalar.add_index(field_name=field, index_type=scalar_type)
        client.create_index(collection, scalar, sync=False)
