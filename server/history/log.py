"""The record and its log: each memory's current state (`memories`) and every event (`history`).

Reads take parsed filter trees (server/filters.py) and render them to SQL here: no SQL text
crosses this module's boundary. `commit` writes new states, history rows, pending marks and
embeddings in one transaction; `revert` undoes exactly that (the write protocol's undo).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from milvus_memory_mcp.filters import And, Cond, Node, to_sql
from milvus_memory_mcp.history.database import Database, rows_in
from milvus_memory_mcp.history.embeddings import put_embeddings
from milvus_memory_mcp.history.pending import mark
from milvus_memory_mcp.records import Change, HistoryEntry, MemoryRecord, text_hash

MEMORY_COLUMNS = "id, memory, hash, metadata, user_id, agent_id, run_id, created_at, updated_at, deleted_at"
HISTORY_COLUMNS = (
    "id, memory_id, old_memory, new_memory, event, created_at, updated_at, "
    "user_id, agent_id, run_id, actor, role, reason, source_hash, metadata"
)
# Without INDEXED BY, SQLite walks the user's index for the ORDER BY: 11 ms at 10k memories a user.
FIND_LIVE_BY_HASH = (
    f"SELECT {MEMORY_COLUMNS} FROM memories INDEXED BY memories_hash WHERE collection = ? AND hash = ? "
    "AND user_id = ? AND agent_id = ? AND run_id = ? AND deleted_at IS NULL ORDER BY created_at LIMIT 1"
)


def _record(row: sqlite3.Row | tuple[Any, ...]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0],
        memory=row[1],
        hash=row[2],
        metadata=json.loads(row[3]),
        user_id=row[4] or None,
        agent_id=row[5] or None,
        run_id=row[6] or None,
        created_at=row[7],
        updated_at=row[8],
        deleted_at=row[9],
    )


def _history(row: sqlite3.Row | tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        id=row[0],
        memory_id=row[1],
        old_memory=row[2],
        new_memory=row[3],
        event=row[4],
        created_at=row[5],
        updated_at=row[6],
        user_id=row[7] or None,
        agent_id=row[8] or None,
        run_id=row[9] or None,
        actor=row[10],
        role=row[11],
        reason=row[12],
        source_hash=row[13],
        metadata=None if row[14] is None else json.loads(row[14]),
    )


def _paged(sql: str, args: list[Any], after: tuple[int, str] | None, limit: int | None) -> tuple[str, list[Any]]:
    """`sql` (rows with created_at and id) from just after a keyset cursor, oldest first, `limit` rows."""
    if after is not None:
        sql += " AND (created_at > ? OR (created_at = ? AND id > ?))"
        args = [*args, after[0], after[0], after[1]]
    sql += " ORDER BY created_at, id"
    if limit is not None:
        sql += " LIMIT ?"
        args = [*args, limit]
    return sql, args


def _where(tree: Node | None) -> tuple[str, list[Any]]:
    return ("1", []) if tree is None else to_sql(tree)


class RecordLog(Database):
    # reads

    async def get(self, memory_id: str) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND id = ?",
                (self._collection, memory_id),
            ).fetchone()
            return _record(row) if row else None

        return await self._run(run)

    async def get_many(self, ids: list[str], where: Node | None = None) -> dict[str, MemoryRecord]:
        """The memories of these ids (those that match the filter tree now, when given)."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> dict[str, MemoryRecord]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND ({condition}) AND id IN ({{}})"
            return {row[0]: _record(row) for row in rows_in(conn, sql, [self._collection, *params], ids)}

        return await self._run(run)

    async def find_live_by_hash(self, text_hash: str, scope: tuple[str, str, str]) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(FIND_LIVE_BY_HASH, (self._collection, text_hash, *scope)).fetchone()
            return _record(row) if row else None

        return await self._run(run)

    async def list_live(
        self, where: Node | None, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]:
        """Live memories matching the filter tree (all with None), oldest first, after a keyset cursor."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({condition})"
            return [_record(r) for r in conn.execute(*_paged(sql, [self._collection, *params], after, limit))]

        return await self._run(run)

    async def live_ids(self, where: Node | None = None) -> list[str]:
        """Ids of the live memories (matching the filter tree, when given)."""
        condition, params = _where(where)

        def run(conn: sqlite3.Connection) -> list[str]:
            sql = f"SELECT id FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({condition})"
            return [r[0] for r in conn.execute(sql, (self._collection, *params))]

        return await self._run(run)

    async def history(self, memory_id: str) -> list[HistoryEntry]:
        def run(conn: sqlite3.Connection) -> list[HistoryEntry]:
            rows = conn.execute(
                f"SELECT {HISTORY_COLUMNS} FROM history WHERE collection = ? AND memory_id = ? ORDER BY seq",
                (self._collection, memory_id),
            )
            return [_history(r) for r in rows]

        return await self._run(run)

    # writes

    def _put_record(self, conn: sqlite3.Connection, r: MemoryRecord) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO memories (collection, {MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                self._collection,
                r.id,
                r.memory,
                r.hash,
                json.dumps(r.metadata, ensure_ascii=False),
                r.user_id or "",
                r.agent_id or "",
                r.run_id or "",
                r.created_at,
                r.updated_at,
                r.deleted_at,
            ),
        )

    def _put_history(self, conn: sqlite3.Connection, h: HistoryEntry) -> None:
        conn.execute(
            f"INSERT INTO history (collection, {HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                self._collection,
                h.id,
                h.memory_id,
                h.old_memory,
                h.new_memory,
                h.event,
                h.created_at,
                h.updated_at,
                h.user_id or "",
                h.agent_id or "",
                h.run_id or "",
                h.actor,
                h.role,
                h.reason,
                h.source_hash,
                None if h.metadata is None else json.dumps(h.metadata, ensure_ascii=False),
            ),
        )

    async def note(self, entries: list[HistoryEntry]) -> None:
        """Record events that change no state (inferred NONE decisions), in one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            for h in entries:
                self._put_history(conn, h)

        if entries:
            await self._transaction(run)

    async def commit(self, changes: list[Change], model: str | None = None) -> None:
        """One transaction: new states, history rows, pending marks, and (given the embedder's
        `model` id) the embeddings of new texts."""

        def run(conn: sqlite3.Connection) -> None:
            if model is not None:
                put_embeddings(
                    conn, model, [(c.new.hash, c.new.memory, c.vector) for c in changes if c.vector is not None]
                )
            for ch in changes:
                self._put_record(conn, ch.new)
                self._put_history(conn, ch.history)
            mark(conn, self._collection, [ch.new.id for ch in changes])

        await self._transaction(run)

    async def revert(self, changes: list[Change]) -> None:
        """Undo `commit(changes)`; the pending marks stay until the vector store agrees again."""

        def run(conn: sqlite3.Connection) -> None:
            for ch in reversed(changes):
                if ch.old is None:
                    conn.execute("DELETE FROM memories WHERE collection = ? AND id = ?", (self._collection, ch.new.id))
                else:
                    self._put_record(conn, ch.old)
                conn.execute("DELETE FROM history WHERE id = ?", (ch.history.id,))

        await self._transaction(run)

    async def counts(self) -> dict[str, Any]:
        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            scopes = conn.execute(
                "SELECT user_id, agent_id, run_id, SUM(deleted_at IS NULL), SUM(deleted_at IS NOT NULL) "
                "FROM memories WHERE collection = ? GROUP BY user_id, agent_id, run_id ORDER BY 1, 2, 3",
                (self._collection,),
            ).fetchall()
            events = conn.execute("SELECT count(*) FROM history WHERE collection = ?", (self._collection,)).fetchone()
            schema = conn.execute("SELECT name FROM migrations ORDER BY rowid DESC LIMIT 1").fetchone()
            return {
                "scopes": [
                    {"user_id": u or None, "agent_id": a or None, "run_id": r or None, "live": live, "deleted": dead}
                    for u, a, r, live, dead in scopes
                ],
                "events": events[0],
                "schema": schema[0] if schema else None,
            }

        return await self._run(run)

    # the past (as_of reads)

    async def list_at(
        self, where: Node | None, at: int, limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]:
        """The memories as they stood at `at` (µs), matching the filter tree then, oldest first:
        each one's state after its last change up to `at` (none when that change deleted it)."""
        condition, params = _where(where)
        # The scope's conditions also narrow the events read (the history rows carry the scope).
        scope, scope_params = _where(_scope_part(where))

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            states = PAST_STATES.format(scope=scope)
            sql = f"SELECT {PAST_COLUMNS} FROM ({states}) WHERE ({condition})"
            args: list[Any] = [self._collection, at, *scope_params, self._collection, *params]
            return [_past(r) for r in conn.execute(*_paged(sql, args, after, limit))]

        return await self._run(run)

    async def versions(self, where: Node | None) -> list[tuple[MemoryRecord, int | None]]:
        """Every version that matched the filter tree while it stood, with the µs time it was
        superseded (None: it stands now); a version stands from its `updated_at`. The versions
        standing at `at` are `list_at(where, at)`."""
        condition, params = _where(where)
        scope, scope_params = _where(_scope_part(where))

        def run(conn: sqlite3.Connection) -> list[tuple[MemoryRecord, int | None]]:
            sql = f"SELECT {PAST_COLUMNS}, ended FROM ({VERSIONS.format(scope=scope)}) WHERE ({condition})"
            args: list[Any] = [self._collection, *scope_params, self._collection, *params]
            return [(_past(r), r[8]) for r in conn.execute(sql, args)]

        return await self._run(run)


# Every version of every memory (each ADD / UPDATE / RESTORE event's state) with the time it was
# superseded (the memory's next state-changing event, DELETE included; NULL: it still stands).
VERSIONS = (
    "SELECT v.id AS id, v.memory AS memory, COALESCE(v.metadata, m.metadata) AS metadata, v.user_id AS user_id, "
    "v.agent_id AS agent_id, v.run_id AS run_id, m.created_at AS created_at, v.updated_at AS updated_at, "
    "v.ended AS ended FROM ("
    "SELECT memory_id AS id, new_memory AS memory, event, metadata, user_id, agent_id, run_id, updated_at, "
    "LEAD(updated_at) OVER (PARTITION BY memory_id ORDER BY seq) AS ended FROM history "
    "WHERE collection = ? AND event IN ('ADD', 'UPDATE', 'DELETE', 'RESTORE') AND ({scope})"
    ") v JOIN memories m ON m.collection = ? AND m.id = v.id WHERE v.event != 'DELETE'"
)

# Every state-changing event up to a time, with the columns the filter renderer expects (those of
# `memories`), numbered newest first per memory; an event recorded before migration 0004 has no
# metadata, and the memory's current metadata stands in for it.
PAST_STATES = (
    "SELECT v.id AS id, v.memory AS memory, COALESCE(v.metadata, m.metadata) AS metadata, v.user_id AS user_id, "
    "v.agent_id AS agent_id, v.run_id AS run_id, m.created_at AS created_at, v.updated_at AS updated_at FROM ("
    "SELECT memory_id AS id, new_memory AS memory, event, metadata, user_id, agent_id, run_id, updated_at, "
    "ROW_NUMBER() OVER (PARTITION BY memory_id ORDER BY seq DESC) AS newest FROM history "
    "WHERE collection = ? AND event IN ('ADD', 'UPDATE', 'DELETE', 'RESTORE') AND updated_at <= ? AND ({scope})"
    ") v JOIN memories m ON m.collection = ? AND m.id = v.id WHERE v.newest = 1 AND v.event != 'DELETE'"
)
PAST_COLUMNS = "id, memory, metadata, user_id, agent_id, run_id, created_at, updated_at"


def _scope_part(tree: Node | None) -> Node | None:
    """The conditions on scope fields that every match must meet (top-level conjuncts)."""
    if not isinstance(tree, And):
        return None
    return And(tuple(p for p in tree.parts if isinstance(p, Cond) and p.kind == "scope"))


def _past(row: sqlite3.Row | tuple[Any, ...]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0],
        memory=row[1],
        hash=text_hash(row[1]),
        metadata=json.loads(row[2]),
        user_id=row[3] or None,
        agent_id=row[4] or None,
        run_id=row[5] or None,
        created_at=row[6],
        updated_at=row[7],
    )
