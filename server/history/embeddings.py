"""The embeddings cache: each stored text's vector (per embedding model) and its analysed words.

It spares the model when changes are re-applied (start-up, `doctor --repair`) and lets the search
index (server/search_index.py) be built at start from SQLite alone, before Milvus opens.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from milvus_memory_mcp.history.database import Database, rows_in
from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import Scope, context_in


@dataclass(frozen=True)
class Embedded:
    """A live memory as `live_embeddings` reads it: `vector` is float32 bytes, or None (not stored)."""

    id: str
    scope: Scope
    hash: str
    memory: str
    vector: bytes | None
    words: str | None  # the text's own analysed words (the memory's context not included)
    context: str | None  # `records.context_of` its metadata


def embedded_row(r: Sequence[Any]) -> Embedded:
    """An `Embedded` of a row (id, user_id, agent_id, run_id, hash, memory, vector, words, metadata)."""
    return Embedded(r[0], Scope(r[1] or None, r[2] or None, r[3] or None), r[4], r[5], r[6], r[7], context_in(r[8]))


def put_embeddings(conn: sqlite3.Connection, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
    """Store (hash, text, vector) rows inside the caller's transaction."""
    conn.executemany(
        "INSERT OR REPLACE INTO embeddings (model, hash, vector, words) VALUES (?, ?, ?, ?)",
        [(model, h, array("f", v).tobytes(), analyse(text)) for h, text, v in rows],
    )


class EmbeddingCache(Database):
    async def save_embeddings(self, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
        """Store (hash, text, vector) rows for `model`."""
        if rows:
            await self._transaction(lambda conn: put_embeddings(conn, model, rows))

    async def prune_embeddings(self) -> None:
        """Drop the embeddings of texts no live memory has any more."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM embeddings WHERE hash NOT IN (SELECT hash FROM memories WHERE deleted_at IS NULL)"
            )

        await self._transaction(run)

    async def embeddings(self, model: str, dims: int, hashes: list[str]) -> dict[str, list[float]]:
        """Stored embeddings of `dims` numbers by text hash (those there are)."""

        def run(conn: sqlite3.Connection) -> dict[str, list[float]]:
            sql = "SELECT hash, vector FROM embeddings WHERE model = ? AND length(vector) = ? AND hash IN ({})"
            return {h: array("f", blob).tolist() for h, blob in rows_in(conn, sql, [model, 4 * dims], hashes)}

        return await self._run(run)

    async def embeddings_with_words(self, model: str, dims: int, hashes: list[str]) -> dict[str, tuple[bytes, str]]:
        """Stored embeddings of `dims` numbers (float32 bytes) and analysed words by text hash (those
        there are)."""

        def run(conn: sqlite3.Connection) -> dict[str, tuple[bytes, str]]:
            sql = "SELECT hash, vector, words FROM embeddings WHERE model = ? AND length(vector) = ? AND hash IN ({})"
            return {h: (blob, words) for h, blob, words in rows_in(conn, sql, [model, 4 * dims], hashes)}

        return await self._run(run)

    async def index_mark(self, model: str) -> dict[str, object]:
        """What a search index built from this database for `model` reflects: any write changes it
        (every write adds a history row; a revert removes the last ones, restoring the state)."""

        def run(conn: sqlite3.Connection) -> dict[str, object]:
            [seq] = conn.execute("SELECT MAX(seq) FROM history").fetchone()
            live = "SELECT count(*) FROM memories WHERE collection = ? AND deleted_at IS NULL"
            [count] = conn.execute(live, (self._collection,)).fetchone()
            [vectors] = conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()
            return {"collection": self._collection, "model": model, "seq": seq or 0, "live": count, "vectors": vectors}

        return await self._run(run)

    async def live_embeddings(self, model: str, dims: int) -> list[Embedded]:
        """Every live memory with its stored embedding of `dims` numbers (None when missing)."""

        def run(conn: sqlite3.Connection) -> list[Embedded]:
            rows = conn.execute(
                "SELECT m.id, m.user_id, m.agent_id, m.run_id, m.hash, m.memory, e.vector, e.words, m.metadata "
                "FROM memories m LEFT JOIN embeddings e ON e.model = ? AND e.hash = m.hash AND length(e.vector) = ? "
                "WHERE m.collection = ? AND m.deleted_at IS NULL",
                (model, 4 * dims, self._collection),
            )
            return [embedded_row(r) for r in rows]

        return await self._run(run)
