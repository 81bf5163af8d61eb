"""Export and import on PostgreSQL: the twin of history/transfer.py."""

from __future__ import annotations

from typing import Any

from milvus_memory_mcp.filters import Node
from milvus_memory_mcp.history.log import HISTORY_COLUMNS, MEMORY_COLUMNS, _history, _record
from milvus_memory_mcp.history.postgres.database import Conn
from milvus_memory_mcp.history.postgres.embeddings import put_embeddings
from milvus_memory_mcp.history.postgres.log import PUT_HISTORY, RecordLog, _where
from milvus_memory_mcp.history.postgres.pending import mark
from milvus_memory_mcp.history.transfer import owner_of
from milvus_memory_mcp.records import HistoryEntry, MemoryRecord

Imported = tuple[MemoryRecord, list[HistoryEntry], list[float] | None]


class Transfer(RecordLog):
    async def count_all(self, where: Node | None) -> tuple[int, int]:
        """(memories, events) matching the filter tree, deleted memories included."""
        condition, params = _where(where)

        async def run(conn: Conn) -> tuple[int, int]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            memories = await conn.fetchval(f"SELECT count(*) FROM ({sub}) AS s", self._collection, *params)
            events = await conn.fetchval(
                f"SELECT count(*) FROM history WHERE collection = ? AND memory_id IN ({sub})",
                self._collection,
                self._collection,
                *params,
            )
            return int(memories), int(events)

        return await self._run(run)

    async def export_page(
        self, where: Node | None, after: tuple[int, str] | None, limit: int
    ) -> list[tuple[MemoryRecord, list[HistoryEntry]]]:
        """Up to `limit` memories (deleted included) after the keyset cursor, oldest first, with their events."""
        condition, params = _where(where)

        async def run(conn: Conn) -> list[tuple[MemoryRecord, list[HistoryEntry]]]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND ({condition})"
            args: list[Any] = [self._collection, *params]
            if after is not None:
                sql += " AND (created_at > ? OR (created_at = ? AND id > ?))"
                args += [after[0], after[0], after[1]]
            rows = await conn.fetch(sql + " ORDER BY created_at, id LIMIT ?", *args, limit)
            records = [_record(r) for r in rows]
            events: dict[str, list[HistoryEntry]] = {r.id: [] for r in records}
            query = (
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? "
                "AND memory_id = ANY(?::text[]) ORDER BY seq"
            )
            for row in await conn.fetch(query, self._collection, list(events)):
                events[row[1]].append(_history(row))
            return [(r, events[r.id]) for r in records]

        return await self._run(run)

    async def scope_events(self, where: Node | None) -> list[tuple[str, str, str, str, str, int]]:
        """(memory_id, user_id, agent_id, run_id, event, updated_at) of every event of the matching memories."""
        condition, params = _where(where)

        async def run(conn: Conn) -> list[tuple[str, str, str, str, str, int]]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            sql = (
                "SELECT memory_id, user_id, agent_id, run_id, event, updated_at FROM history "
                f"WHERE collection = ? AND memory_id IN ({sub}) ORDER BY memory_id, seq"
            )
            return await conn.fetch(sql, self._collection, self._collection, *params)  # type: ignore[return-value]

        return await self._run(run)

    async def latest_events(self, where: Node | None, limit: int) -> list[HistoryEntry]:
        """The `limit` latest changes (NONE events left out) to matching memories, newest first."""
        condition, params = _where(where)

        async def run(conn: Conn) -> list[HistoryEntry]:
            sub = f"SELECT id FROM memories WHERE collection = ? AND ({condition})"
            sql = (
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? AND event != 'NONE' "
                f"AND memory_id IN ({sub}) ORDER BY updated_at DESC, id DESC LIMIT ?"
            )
            return [_history(r) for r in await conn.fetch(sql, self._collection, self._collection, *params, limit)]

        return await self._run(run)

    async def existing_ids(self, ids: list[str]) -> set[str]:
        async def run(conn: Conn) -> set[str]:
            sql = "SELECT id FROM memories WHERE collection = ? AND id = ANY(?::text[])"
            return {r[0] for r in await conn.fetch(sql, self._collection, ids)}

        return await self._run(run)

    async def event_owners(self, ids: list[str]) -> dict[str, str]:
        """The memory each of these history event ids already belongs to (`owner_of`)."""

        async def run(conn: Conn) -> dict[str, str]:
            sql = "SELECT id, collection, memory_id FROM history WHERE id = ANY(?::text[])"
            return {r[0]: owner_of(r[1], r[2], self._collection) for r in await conn.fetch(sql, ids)}

        return await self._run(run)

    async def import_records(self, items: list[Imported], model: str) -> None:
        """Write memories and their events verbatim, replacing any with the same id, in one transaction."""

        async def run(conn: Conn) -> None:
            await put_embeddings(conn, model, [(r.hash, r.memory, v) for r, _, v in items if v is not None])
            for record, events, _ in items:
                sql = "DELETE FROM history WHERE collection = ? AND memory_id = ?"
                await conn.execute(sql, self._collection, record.id)
                await self._put_record(conn, record)
                if events:
                    await conn.execute("DELETE FROM history WHERE id = ANY(?::text[])", [h.id for h in events])
                    await conn.executemany(PUT_HISTORY, [self._history_row(h) for h in events])
            await mark(conn, self._collection, [r.id for r, _, _ in items])

        if items:
            await self._transaction(run)
