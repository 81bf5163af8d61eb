"""SQLite adapter: the record of memories, their history, and pending vector-store writes.

stdlib `sqlite3` on one connection, used from worker threads one call at a time (a capacity
limiter of 1); WAL and a busy timeout so several processes can share the file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import anyio

from ..errors import StoreUnavailable
from ..keywords import analyse
from ..private import create_private_file, make_private_dir
from ..records import Change, HistoryEntry, MemoryRecord, Scope

logger = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_memories_history_pending",
        """
        CREATE TABLE memories (
            collection TEXT NOT NULL,
            id TEXT NOT NULL,
            memory TEXT NOT NULL,
            hash TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            user_id TEXT NOT NULL DEFAULT '',
            agent_id TEXT NOT NULL DEFAULT '',
            run_id TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            deleted_at INTEGER,
            PRIMARY KEY (collection, id)
        );
        CREATE INDEX memories_live_order ON memories (collection, deleted_at, created_at, id);
        CREATE INDEX memories_user ON memories (collection, user_id, created_at, id);
        CREATE INDEX memories_hash ON memories (collection, hash);
        CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            event TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            user_id TEXT NOT NULL DEFAULT '',
            agent_id TEXT NOT NULL DEFAULT '',
            run_id TEXT NOT NULL DEFAULT '',
            actor TEXT,
            role TEXT,
            reason TEXT,
            source_hash TEXT
        );
        CREATE INDEX history_memory ON history (collection, memory_id, seq);
        CREATE TABLE pending (
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            PRIMARY KEY (collection, memory_id)
        );
        """,
    ),
    (
        # Inferred NONE decisions ("already known") are recorded too, with the model's reason.
        "0002_history_none_events",
        """
        CREATE TABLE history_new (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            event TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE', 'NONE')),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            user_id TEXT NOT NULL DEFAULT '',
            agent_id TEXT NOT NULL DEFAULT '',
            run_id TEXT NOT NULL DEFAULT '',
            actor TEXT,
            role TEXT,
            reason TEXT,
            source_hash TEXT
        );
        INSERT INTO history_new SELECT * FROM history;
        DROP TABLE history;
        ALTER TABLE history_new RENAME TO history;
        CREATE INDEX history_memory ON history (collection, memory_id, seq);
        """,
    ),
    (
        # Each stored text's embedding (per model) and analysed words, for the search index (Lite).
        "0003_embeddings",
        """
        CREATE TABLE embeddings (
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            vector BLOB NOT NULL,
            words TEXT NOT NULL,
            PRIMARY KEY (model, hash)
        );
        """,
    ),
]

_MEMORY_COLUMNS = "id, memory, hash, metadata, user_id, agent_id, run_id, created_at, updated_at, deleted_at"
_HISTORY_COLUMNS = (
    "id, memory_id, old_memory, new_memory, event, created_at, updated_at, "
    "user_id, agent_id, run_id, actor, role, reason, source_hash"
)


@dataclass(frozen=True)
class Embedded:
    """A live memory as `live_embeddings` reads it: `vector` is float32 bytes, or None (not stored)."""

    id: str
    scope: Scope
    hash: str
    memory: str
    vector: bytes | None
    words: str | None


# Without INDEXED BY, SQLite walks the user's index for the ORDER BY: 11 ms at 10k memories a user.
FIND_LIVE_BY_HASH = (
    f"SELECT {_MEMORY_COLUMNS} FROM memories INDEXED BY memories_hash WHERE collection = ? AND hash = ? "
    "AND user_id = ? AND agent_id = ? AND run_id = ? AND deleted_at IS NULL ORDER BY created_at LIMIT 1"
)


def _rows_in(conn: sqlite3.Connection, sql: str, params: list[Any], values: list[str]) -> Iterator[Any]:
    """Rows of `sql`, whose `{}` is filled with placeholders for `values`, 500 values a query."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        yield from conn.execute(sql.format(",".join("?" * len(chunk))), (*params, *chunk))


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
    )


def _hint(e: Exception) -> str:
    """What to do about the failures a user can fix (a full disk, a read-only file)."""
    name = getattr(e, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL") or getattr(e, "errno", None) == errno.ENOSPC:
        return " (the disk is full: free some space and try again)"
    if name.startswith("SQLITE_READONLY") or getattr(e, "errno", None) == errno.EROFS:
        return " (the file or its file system is read-only)"
    return ""


def _unwritable(folder: Path) -> str:
    # access() reports a read-only file system even to root, who bypasses permissions.
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return f" ({folder} is not writable: a read-only file system or missing permissions)"
    return ""


def apply_migrations(conn: sqlite3.Connection) -> list[str]:
    """Run the named migrations not yet recorded, in order; returns the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with conn:
            conn.executescript("BEGIN;" + sql + ";")
            conn.execute("INSERT INTO migrations VALUES (?, datetime('now'))", (name,))
        applied.append(name)
    return applied


class SQLiteHistory:
    def __init__(self, path: Path, collection: str) -> None:
        self._path = path
        self._collection = collection
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable("The history database is not open.")
        conn = self._conn
        try:
            return await anyio.to_thread.run_sync(fn, conn, limiter=self._limiter)
        except sqlite3.Error as e:
            logger.exception("SQLite call failed")
            raise StoreUnavailable(f"The history database at {self._path} failed: {e}{_hint(e)}") from e

    async def open(self) -> None:
        if self._conn is None:
            await anyio.to_thread.run_sync(self._open, limiter=self._limiter)

    def _open(self) -> None:
        try:
            make_private_dir(self._path.parent)
            create_private_file(self._path)
            conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            for name in apply_migrations(conn):
                logger.info("history database migrated: %s", name)
        except (sqlite3.Error, OSError) as e:
            hint = _hint(e) or _unwritable(self._path.parent)
            raise StoreUnavailable(
                f"Could not open the history database at {self._path}: {e}{hint}. Its directory must exist "
                "or be creatable, and be writable: set MEMORY_DATA_DIR or MEMORY_HISTORY_PATH to such a place."
            ) from e
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    # reads

    async def get(self, memory_id: str) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE collection = ? AND id = ?",
                (self._collection, memory_id),
            ).fetchone()
            return _record(row) if row else None

        return await self._run(run)

    async def get_many(self, ids: list[str]) -> dict[str, MemoryRecord]:
        def run(conn: sqlite3.Connection) -> dict[str, MemoryRecord]:
            sql = f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE collection = ? AND id IN ({{}})"
            return {row[0]: _record(row) for row in _rows_in(conn, sql, [self._collection], ids)}

        return await self._run(run)

    async def find_live_by_hash(self, text_hash: str, scope: tuple[str, str, str]) -> MemoryRecord | None:
        def run(conn: sqlite3.Connection) -> MemoryRecord | None:
            row = conn.execute(FIND_LIVE_BY_HASH, (self._collection, text_hash, *scope)).fetchone()
            return _record(row) if row else None

        return await self._run(run)

    async def list_live(
        self, where: str, params: list[Any], limit: int | None, after: tuple[int, str] | None = None
    ) -> list[MemoryRecord]:
        """Live memories matching `where` (from `filters.to_sql`), oldest first, after a keyset cursor."""

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            sql = f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({where})"
            args: list[Any] = [self._collection, *params]
            if after is not None:
                sql += " AND (created_at > ? OR (created_at = ? AND id > ?))"
                args += [after[0], after[0], after[1]]
            sql += " ORDER BY created_at, id"
            if limit is not None:
                sql += " LIMIT ?"
                args.append(limit)
            return [_record(r) for r in conn.execute(sql, args)]

        return await self._run(run)

    async def history(self, memory_id: str) -> list[HistoryEntry]:
        def run(conn: sqlite3.Connection) -> list[HistoryEntry]:
            rows = conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM history WHERE collection = ? AND memory_id = ? ORDER BY seq",
                (self._collection, memory_id),
            )
            return [_history(r) for r in rows]

        return await self._run(run)

    async def pending_ids(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT memory_id FROM pending WHERE collection = ?", (self._collection,))
            return [r[0] for r in rows]

        return await self._run(run)

    async def live_ids(self, where: str = "1", params: Sequence[Any] = ()) -> list[str]:
        """Ids of the live memories (matching `where` from `filters.to_sql`, when given)."""

        def run(conn: sqlite3.Connection) -> list[str]:
            sql = f"SELECT id FROM memories WHERE collection = ? AND deleted_at IS NULL AND ({where})"
            return [r[0] for r in conn.execute(sql, (self._collection, *params))]

        return await self._run(run)

    # writes

    def _put_record(self, conn: sqlite3.Connection, r: MemoryRecord) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO memories (collection, {_MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
            f"INSERT INTO history (collection, {_HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
            ),
        )

    @staticmethod
    def _put_embeddings(conn: sqlite3.Connection, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO embeddings (model, hash, vector, words) VALUES (?, ?, ?, ?)",
            [(model, h, array("f", v).tobytes(), analyse(text)) for h, text, v in rows],
        )

    async def save_embeddings(self, model: str, rows: list[tuple[str, str, list[float]]]) -> None:
        """Store (hash, text, vector) rows for `model`."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                self._put_embeddings(conn, model, rows)

        if rows:
            await self._run(run)

    async def prune_embeddings(self) -> None:
        """Drop the embeddings of texts no live memory has any more."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "DELETE FROM embeddings WHERE hash NOT IN (SELECT hash FROM memories WHERE deleted_at IS NULL)"
                )

        await self._run(run)

    async def embeddings(self, model: str, hashes: list[str]) -> dict[str, list[float]]:
        """Stored embeddings by text hash (those there are)."""

        def run(conn: sqlite3.Connection) -> dict[str, list[float]]:
            sql = "SELECT hash, vector FROM embeddings WHERE model = ? AND hash IN ({})"
            return {h: array("f", blob).tolist() for h, blob in _rows_in(conn, sql, [model], hashes)}

        return await self._run(run)

    async def live_embeddings(self, model: str) -> list[Embedded]:
        """Every live memory with its stored embedding (None when missing)."""

        def run(conn: sqlite3.Connection) -> list[Embedded]:
            rows = conn.execute(
                "SELECT m.id, m.user_id, m.agent_id, m.run_id, m.hash, m.memory, e.vector, e.words "
                "FROM memories m LEFT JOIN embeddings e ON e.model = ? AND e.hash = m.hash "
                "WHERE m.collection = ? AND m.deleted_at IS NULL",
                (model, self._collection),
            )
            return [
                Embedded(r[0], Scope(r[1] or None, r[2] or None, r[3] or None), r[4], r[5], r[6], r[7]) for r in rows
            ]

        return await self._run(run)

    async def note(self, entries: list[HistoryEntry]) -> None:
        """Record events that change no state (inferred NONE decisions), in one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for h in entries:
                    self._put_history(conn, h)

        if entries:
            await self._run(run)

    async def commit(self, changes: list[Change], model: str | None = None) -> None:
        """One transaction: new states, history rows, pending marks, and (given the embedder's
        `model` id) the embeddings of new texts."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if model is not None:
                    self._put_embeddings(
                        conn, model, [(c.new.hash, c.new.memory, c.vector) for c in changes if c.vector is not None]
                    )
                for ch in changes:
                    self._put_record(conn, ch.new)
                    self._put_history(conn, ch.history)
                    conn.execute(
                        "INSERT OR IGNORE INTO pending (collection, memory_id) VALUES (?, ?)",
                        (self._collection, ch.new.id),
                    )

        await self._run(run)

    async def revert(self, changes: list[Change]) -> None:
        """Undo `commit(changes)`; the pending marks stay until the vector store agrees again."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for ch in reversed(changes):
                    if ch.old is None:
                        conn.execute(
                            "DELETE FROM memories WHERE collection = ? AND id = ?", (self._collection, ch.new.id)
                        )
                    else:
                        self._put_record(conn, ch.old)
                    conn.execute("DELETE FROM history WHERE id = ?", (ch.history.id,))

        await self._run(run)

    async def mark_pending(self, ids: list[str]) -> None:
        """Mark memories for re-application to the vector store (e.g. before rebuilding it)."""
        await self._each_pending("INSERT OR IGNORE INTO pending (collection, memory_id) VALUES (?, ?)", ids)

    async def clear_pending(self, ids: list[str]) -> None:
        await self._each_pending("DELETE FROM pending WHERE collection = ? AND memory_id = ?", ids)

    async def _each_pending(self, sql: str, ids: list[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, [(self._collection, i) for i in ids])

        await self._run(run)
