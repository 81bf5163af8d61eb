"""Pending marks on PostgreSQL: the twin of history/pending.py."""

from __future__ import annotations

from milvus_memory_mcp.history.postgres.database import Conn, Database

MARK = "INSERT INTO pending (collection, memory_id) VALUES (?, ?) ON CONFLICT DO NOTHING"


async def mark(conn: Conn, collection: str, ids: list[str]) -> None:
    """Mark `ids` inside the caller's transaction."""
    await conn.executemany(MARK, [(collection, i) for i in ids])


class PendingMarks(Database):
    async def pending_ids(self) -> list[str]:
        async def run(conn: Conn) -> list[str]:
            return [
                r[0] for r in await conn.fetch("SELECT memory_id FROM pending WHERE collection = ?", self._collection)
            ]

        return await self._run(run)

    async def mark_pending(self, ids: list[str]) -> None:
        """Mark memories for re-application to the vector store (e.g. before rebuilding it)."""

        async def run(conn: Conn) -> None:
            await mark(conn, self._collection, ids)

        await self._transaction(run)

    async def clear_pending(self, ids: list[str]) -> None:
        async def run(conn: Conn) -> None:
            sql = "DELETE FROM pending WHERE collection = ? AND memory_id = ANY(?::text[])"
            await conn.execute(sql, self._collection, ids)

        await self._transaction(run)
