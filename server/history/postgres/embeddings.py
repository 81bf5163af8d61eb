"""The embeddings cache on PostgreSQL: the twin of history/embeddings.py (vectors as float32 bytes)."""

from __future__ import annotations

from array import array

from milvus_memory_mcp.history.embeddings import Embedded, embedded_row
from milvus_memory_mcp.history.postgres.database import Conn, Database
from milvus_memory_mcp.keywords import analyse

PUT = (
    "INSERT INTO embeddings (model, hash, vector, words) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (model, hash) DO UPDATE SET vector = EXCLUDED.vector, words = EXCLUDED.words"
)


async def put_embeddings(conn: Conn, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
    """Store (hash, text, vector) rows inside the caller's transaction."""
    await conn.executemany(PUT, [(model, h, array("f", v).tobytes(), analyse(text)) for h, text, v in rows])


class EmbeddingCache(Database):
    async def save_embeddings(self, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
        """Store (hash, text, vector) rows for `model`."""

        async def run(conn: Conn) -> None:
            await put_embeddings(conn, model, rows)

        if rows:
            await self._transaction(run)

    async def prune_embeddings(self) -> None:
        """Drop the embeddings of texts no live memory has any more."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM embeddings e WHERE NOT EXISTS "
                "(SELECT 1 FROM memories m WHERE m.hash = e.hash AND m.deleted_at IS NULL)"
            )

        await self._transaction(run)

    async def embeddings(self, model: str, dims: int, hashes: list[str]) -> dict[str, list[float]]:
        async def run(conn: Conn) -> dict[str, list[float]]:
            sql = (
                "SELECT hash, vector FROM embeddings WHERE model = ? AND octet_length(vector) = ? "
                "AND hash = ANY(?::text[])"
            )
            return {h: array("f", blob).tolist() for h, blob in await conn.fetch(sql, model, 4 * dims, hashes)}

        return await self._run(run)

    async def embeddings_with_words(self, model: str, dims: int, hashes: list[str]) -> dict[str, tuple[bytes, str]]:
        async def run(conn: Conn) -> dict[str, tuple[bytes, str]]:
            sql = (
                "SELECT hash, vector, words FROM embeddings "
                "WHERE model = ? AND octet_length(vector) = ? AND hash = ANY(?::text[])"
            )
            return {h: (bytes(blob), words) for h, blob, words in await conn.fetch(sql, model, 4 * dims, hashes)}

        return await self._run(run)

    async def index_mark(self, model: str) -> dict[str, object]:
        """What a search index built from this database for `model` reflects: the change counter
        moves on every write transaction (a revert too), by any process."""

        async def run(conn: Conn) -> dict[str, object]:
            changes = await conn.fetchval("SELECT n FROM changes WHERE id = 1")
            live = "SELECT count(*) FROM memories WHERE collection = ? AND deleted_at IS NULL"
            count = await conn.fetchval(live, self._collection)
            vectors = await conn.fetchval("SELECT count(*) FROM embeddings WHERE model = ?", model)
            return {"collection": self._collection, "model": model, "seq": changes, "live": count, "vectors": vectors}

        return await self._run(run)

    async def live_embeddings(self, model: str, dims: int) -> list[Embedded]:
        """Every live memory with its stored embedding of `dims` numbers (None when missing)."""

        async def run(conn: Conn) -> list[Embedded]:
            rows = await conn.fetch(
                "SELECT m.id, m.user_id, m.agent_id, m.run_id, m.hash, m.memory, e.vector, e.words, m.metadata "
                "FROM memories m LEFT JOIN embeddings e "
                "ON e.model = ? AND e.hash = m.hash AND octet_length(e.vector) = ? "
                "WHERE m.collection = ? AND m.deleted_at IS NULL",
                model,
                4 * dims,
                self._collection,
            )
            return [embedded_row(r) for r in rows]

        return await self._run(run)
