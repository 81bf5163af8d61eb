"""The SQLite connection the history store's parts share.

stdlib `sqlite3` on one connection, used from worker threads one call at a time (a capacity
limiter of 1); WAL and a busy timeout so several processes can share the file. Every sqlite3
error is translated here, at the boundary, into `StoreUnavailable` with a hint a user can act on.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio

from milvus_memory_mcp.errors import StoreUnavailable
from milvus_memory_mcp.history.migrations import apply_migrations
from milvus_memory_mcp.private import create_private_file, make_private_dir

logger = logging.getLogger(__name__)
T = TypeVar("T")
IN_CHUNK = 500  # values per `IN (...)` query (SQLite's variable limit is 999 on old builds)


def rows_in(conn: sqlite3.Connection, sql: str, params: list[Any], values: list[str]) -> Iterator[Any]:
    """Rows of `sql`, whose `{}` is filled with placeholders for `values`, IN_CHUNK values a query."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        yield from conn.execute(sql.format(",".join("?" * len(chunk))), (*params, *chunk))


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


class Database:
    """One history database file, for one collection; `open` connects and migrates it."""

    def __init__(self, path: Path, collection: str) -> None:
        self._path = path
        self._collection = collection
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._commits = 0  # write transactions this process committed
        self._notes = 0  # write timestamps this process noted (history/reembed.py `note_vector_ts`)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable("The history database is not open.")
        conn = self._conn
        try:
            return await anyio.to_thread.run_sync(fn, conn, limiter=self._limiter)
        except sqlite3.Error as e:
            logger.exception("SQLite call failed")
            raise StoreUnavailable(f"The history database at {self._path} failed: {e}{_hint(e)}") from e

    async def _transaction(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Run `fn` in one write transaction (BEGIN IMMEDIATE: other processes wait, never deadlock)."""

        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                fn(conn)
            self._commits += 1

        await self._run(run)

    async def change_mark(self) -> tuple[int, int]:
        """A value that differs after any commit to the database, by this process or another
        (SQLite's `data_version` counts the others'): for caches of what it holds."""

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            return self._commits, int(conn.execute("PRAGMA data_version").fetchone()[0])

        return await self._run(run)

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
