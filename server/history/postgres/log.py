"""The record and its log on PostgreSQL: the twin of history/log.py (same semantics, same SQL shape).

Reads take parsed filter trees, rendered here by `to_pg`; `commit` writes new states, history rows,
pending marks and embeddings in one transaction; `revert` undoes exactly that.
"""

from __future__ import annotations

import json
from typing import Any

from milvus_memory_mcp.filters import Node
from milvus_memory_mcp.history.log import (
    HISTORY_COLUMNS,
    MEMORY_COLUMNS,
    PAST_COLUMNS,
    PAST_STATES,
    VERSIONS,
    _history,
    _paged,
    _past,
    _record,
    _scope_part,
)
from milvus_memory_mcp.history.postgres.database import Conn, Database
from milvus_memory_mcp.history.postgres.embeddings import put_embeddings
from milvus_memory_mcp.history.postgres.filters import to_pg
from milvus_memory_mcp.history.postgres.pending import mark
from milvus_memory_mcp.records import Change, HistoryEntry, MemoryRecord

_UPDATE_MEMORY = ", ".join(f"{c} = EXCLUDED.{c}" for c in MEMORY_COLUMNS.split(", ")[1:])
PUT_MEMORY = (
    f"INSERT INTO memories (collection, {MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
    f"ON CONFLICT (collection, id) DO UPDATE SET {_UPDATE_MEMORY}"
)
PUT_HISTORY = f"INSERT INTO history (collection, {HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
FIND_LIVE_BY_HASH = (
    f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND hash = ? "
    "AND user_id = ? AND agent_id = ? AND run_id = ? AND deleted_at IS NULL ORDER BY created_at LIMIT 1"
)


def _where(tree: Node | None) -> tuple[str, list[Any]]:
    return ("TRUE", []) if tree is None else to_pg(tree)


class RecordLog(Database):
    # reads

    async def get(self, memory_id: str) -> MemoryRecord | None:
        async def run(conn: Conn) -> MemoryRecord | None:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND id = ?"
            row = await conn.fetchrow(sql, self._collection, memory_id)
            return _record(row) if row else None

        return await self._run(run)

    async def get_many(self, ids: list[str], where: Node | None = None) -> dict[str, MemoryRecord]:
        """The memories of these ids (those that match the filter tree now, when given)."""
        condition, params = _where(where)

        async def run(conn: Conn) -> dict[str, MemoryRecord]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND ({condition}) "
            sql += "AND id = ANY(?::text[])"
            return {row[0]: _record(row) for row in await conn.fetch(sql, self._collection, *params, ids)}

        return await self._run(run)

    async def find_live_by_hash(self, text_hash: str, scope: tuple[str, str, str]) -> MemoryRecord | None:
        async def run(conn: Conn) -> MemoryRecord | None:
            row = await conn.fetchrow(FIND_LIVE_BY_HASH, self._collection, text_hash, *scope)
            return _record(row) if row else None

        return await self._run(run)

    async def list_live(
        self, where: Node | None, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]:
        condition, params = _where(where)

        async def run(conn: Conn) -> list[MemoryRecord]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({condition})"
            sql, args = _paged(sql, [self._collection, *params], after, limit)
            return [_record(r) for r in await conn.fetch(sql, *args)]

        return await self._run(run)

    async def live_ids(self, where: Node | None = None) -> list[str]:
        condition, params = _where(where)

        async def run(conn: Conn) -> list[str]:
            sql = f"SELECT id FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({condition})"
            return [r[0] for r in await conn.fetch(sql, self._collection, *params)]

        return await self._run(run)

    async def history(self, memory_id: str) -> list[HistoryEntry]:
        async def run(conn: Conn) -> list[HistoryEntry]:
            sql = f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? AND memory_id = ? ORDER BY seq"
            return [_history(r) for r in await conn.fetch(sql, self._collection, memory_id)]

        return await self._run(run)

    # writes

    async def _put_record(self, conn: Conn, r: MemoryRecord) -> None:
        await conn.execute(PUT_MEMORY, *self._record_row(r))

    def _record_row(self, r: MemoryRecord) -> tuple[Any, ...]:
        metadata = json.dumps(r.metadata, ensure_ascii=False)
        scope = (r.user_id or "", r.agent_id or "", r.run_id or "")
        return (self._collection, r.id, r.memory, r.hash, metadata, *scope, r.created_at, r.updated_at, r.deleted_at)

    def _history_row(self, h: HistoryEntry) -> tuple[Any, ...]:
        metadata = None if h.metadata is None else json.dumps(h.metadata, ensure_ascii=False)
        scope = (h.user_id or "", h.agent_id or "", h.run_id or "")
        head = (self._collection, h.id, h.memory_id, h.old_memory, h.new_memory, h.event, h.created_at, h.updated_at)
        return (*head, *scope, h.actor, h.role, h.reason, h.source_hash, metadata)

    async def note(self, entries: list[HistoryEntry]) -> None:
        """Record events that change no state (inferred NONE decisions), in one transaction."""

        async def run(conn: Conn) -> None:
            await conn.executemany(PUT_HISTORY, [self._history_row(h) for h in entries])

        if entries:
            await self._transaction(run)

    async def commit(self, changes: list[Change], model: str | None = None) -> None:
        """One transaction: new states, history rows, pending marks, and the embeddings of new texts."""

        async def run(conn: Conn) -> None:
            if model is not None:
                rows = [(c.new.hash, c.new.memory, c.vector) for c in changes if c.vector is not None]
                await put_embeddings(conn, model, rows)
            for ch in changes:
                await self._put_record(conn, ch.new)
                await conn.execute(PUT_HISTORY, *self._history_row(ch.history))
            await mark(conn, self._collection, [ch.new.id for ch in changes])

        await self._transaction(run)

    async def revert(self, changes: list[Change]) -> None:
        """Undo `commit(changes)`; the pending marks stay until the vector store agrees again."""

        async def run(conn: Conn) -> None:
            for ch in reversed(changes):
                if ch.old is None:
                    await conn.execute(
                        "DELETE FROM memories WHERE collection = ? AND id = ?", self._collection, ch.new.id
                    )
                else:
                    await self._put_record(conn, ch.old)
                await conn.execute("DELETE FROM history WHERE id = ?", ch.history.id)

        await self._transaction(run)

    async def counts(self) -> dict[str, Any]:
        async def run(conn: Conn) -> dict[str, Any]:
            scopes = await conn.fetch(
                "SELECT user_id, agent_id, run_id, count(*) FILTER (WHERE deleted_at IS NULL), "
                "count(*) FILTER (WHERE deleted_at IS NOT NULL) "
                "FROM memories WHERE collection = ? GROUP BY user_id, agent_id, run_id ORDER BY 1, 2, 3",
                self._collection,
            )
            events = await conn.fetchval("SELECT count(*) FROM history WHERE collection = ?", self._collection)
            schema = await conn.fetchval("SELECT name FROM migrations ORDER BY n DESC LIMIT 1")
            return {
                "scopes": [
                    {"user_id": u or None, "agent_id": a or None, "run_id": r or None, "live": live, "deleted": dead}
                    for u, a, r, live, dead in scopes
                ],
                "events": events,
                "schema": schema,
            }

        return await self._run(run)

    # the past (as_of reads)

    async def list_at(
        self, where: Node | None, at: int, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]:
        """The memories as they stood at `at` (µs), matching the filter tree then, oldest first."""
        condition, params = _where(where)
        scope, scope_params = _where(_scope_part(where))

        async def run(conn: Conn) -> list[MemoryRecord]:
            states = PAST_STATES.format(scope=scope)
            sql = f"SELECT {PAST_COLUMNS} FROM ({states}) AS past WHERE ({condition})"
            args: list[Any] = [self._collection, at, *scope_params, self._collection, *params]
            sql, args = _paged(sql, args, after, limit)
            return [_past(r) for r in await conn.fetch(sql, *args)]

        return await self._run(run)

    async def versions(self, where: Node | None) -> list[tuple[MemoryRecord, int | None]]:
        """Every version that matched the filter tree while it stood, with the µs time it was superseded."""
        condition, params = _where(where)
        scope, scope_params = _where(_scope_part(where))

        async def run(conn: Conn) -> list[tuple[MemoryRecord, int | None]]:
            sql = f"SELECT {PAST_COLUMNS}, ended FROM ({VERSIONS.format(scope=scope)}) AS v2 WHERE ({condition})"
            args: list[Any] = [self._collection, *scope_params, self._collection, *params]
            return [(_past(r), r[8]) for r in await conn.fetch(sql, *args)]

        return await self._run(run)
