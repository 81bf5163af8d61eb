"""Export and import: memories with their whole history, page by page, and written back verbatim.

`export_page` reads memories (deleted ones included) by a keyset over (created_at, id), with
each one's events, so an export streams in bounded memory. `import_records` writes memories and
their events as they were (ids, times, actors), with pending marks and embeddings, in one
transaction; an id already present is skipped or replaced whole.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from milvus_memory_mcp.filters import Node
from milvus_memory_mcp.history.database import rows_in
from milvus_memory_mcp.history.embeddings import put_embeddings
from milvus_memory_mcp.history.log import HISTORY_COLUMNS, MEMORY_COLUMNS, RecordLog, _history, _record, _where
from milvus_memory_mcp.history.pending import mark
from milvus_memory_mcp.records import HistoryEntry, MemoryRecord

Imported = tuple[MemoryRecord, list[HistoryEntry], list[float] | None]


class Transfer(RecordLog):
    async def count_all(self, where: Node | None) -> tuple[int, int]:
        """(memories, events) matching the filter tree, deleted memories included."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            memories = conn.execute(f"SELECT count(*) FROM ({sub})", (self._collection, *params)).fetchone()[0]
            events = conn.execute(
                f"SELECT count(*) FROM history WHERE collection = ? AND memory_id IN ({sub})",
                (self._collection, self._collection, *params),
            ).fetchone()[0]
            return memories, events

        return await self._run(run)

    async def export_page(
        self, where: Node | None, after: tuple[int, str] | None, limit: int
    ) -> list[tuple[MemoryRecord, list[HistoryEntry]]]:
        """Up to `limit` memories (deleted included) after the keyset cursor, oldest first, with their events."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> list[tuple[MemoryRecord, list[HistoryEntry]]]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND ({condition})"
            args: list[Any] = [self._collection, *params]
            if after is not None:
                sql += " AND (created_at > ? OR (created_at = ? AND id > ?))"
                args += [after[0], after[0], after[1]]
            records = [_record(r) for r in conn.execute(sql + " ORDER BY created_at, id LIMIT ?", (*args, limit))]
            events: dict[str, list[HistoryEntry]] = {r.id: [] for r in records}
            query = f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? AND memory_id IN ({{}}) ORDER BY seq"
            for row in rows_in(conn, query, [self._collection], list(events)):
                events[row[1]].append(_history(row))
            return [(r, events[r.id]) for r in records]

        return await self._run(run)

    async def scope_events(self, where: Node | None) -> list[tuple[str, str, str, str, str, int]]:
        """(memory_id, user_id, agent_id, run_id, event, updated_at) of every event of the memories
        matching the filter tree (deleted ones included), each memory's in order: the dashboard's
        activity charts, without reading texts."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, str, str, str, int]]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            sql = (
                "SELECT memory_id, user_id, agent_id, run_id, event, updated_at FROM history "
                f"WHERE collection = ? AND memory_id IN ({sub}) ORDER BY memory_id, seq"
            )
            return conn.execute(sql, (self._collection, self._collection, *params)).fetchall()

        return await self._run(run)

    async def latest_events(self, where: Node | None, limit: int) -> list[HistoryEntry]:
        """The `limit` latest changes (NONE events left out) to memories matching the filter tree, newest first."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> list[HistoryEntry]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            sql = (
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? AND event != 'NONE' "
                f"AND memory_id IN ({sub}) ORDER BY updated_at DESC, id DESC LIMIT ?"
            )
            return [_history(r) for r in conn.execute(sql, (self._collection, self._collection, *params, limit))]

        return await self._run(run)

    async def existing_ids(self, ids: list[str]) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            sql = "SELECT id FROM memories WHERE collection = ? AND id IN ({})"
            return {r[0] for r in rows_in(conn, sql, [self._collection], ids)}

        return await self._run(run)

    async def event_owners(self, ids: list[str]) -> dict[str, str]:
        """The memory each of these history event ids already belongs to (`owner_of`)."""

        def run(conn: sqlite3.Connection) -> dict[str, str]:
            sql = "SELECT id, collection, memory_id FROM history WHERE id IN ({})"
            return {r[0]: owner_of(r[1], r[2], self._collection) for r in rows_in(conn, sql, [], ids)}

        return await self._run(run)

    async def import_records(self, items: list[Imported], model: str) -> None:
        """Write memories and their events verbatim, replacing any with the same id, in one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            put_embeddings(conn, model, [(r.hash, r.memory, v) for r, _, v in items if v is not None])
            for record, events, _ in items:
                conn.execute(
                    "DELETE FROM history WHERE collection = ? AND memory_id = ?", (self._collection, record.id)
                )
                self._put_record(conn, record)
                for h in events:
                    conn.execute("DELETE FROM history WHERE id = ?", (h.id,))
                    self._put_history(conn, h)
            mark(conn, self._collection, [r.id for r, _, _ in items])

        if items:
            await self._transaction(run)


def owner_of(collection: str, memory_id: str, current: str) -> str:
    """An event's memory: its id, with its collection when that is not the current one."""
    return memory_id if collection == current else f"{memory_id} of collection {collection}"
