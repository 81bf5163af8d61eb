"""Pending marks: which memories SQLite has changed but the vector store may not hold yet.

A mark is written in the same transaction as the change (`RecordLog.commit`) and cleared once the
vector store has made the change durable; marks left by a crash are re-applied at the next start
(server/core/writes.py, docs/ARCHITECTURE.md "The write protocol").
"""

from __future__ import annotations

import sqlite3

from milvus_memory_mcp.history.database import Database

MARK = "INSERT OR IGNORE INTO pending (collection, memory_id) VALUES (?, ?)"


def mark(conn: sqlite3.Connection, collection: str, ids: list[str]) -> None:
    """Mark `ids` inside the caller's transaction."""
    conn.executemany(MARK, [(collection, i) for i in ids])


class PendingMarks(Database):
    async def pending_ids(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT memory_id FROM pending WHERE collection = ?", (self._collection,))
            return [r[0] for r in rows]

        return await self._run(run)

    async def mark_pending(self, ids: list[str]) -> None:
        """Mark memories for re-application to the vector store (e.g. before rebuilding it)."""
        await self._transaction(lambda conn: mark(conn, self._collection, ids))

    async def clear_pending(self, ids: list[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM pending WHERE collection = ? AND memory_id = ?", [(self._collection, i) for i in ids]
            )

        await self._transaction(run)
