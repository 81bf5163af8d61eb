"""The PostgreSQL connection pool the history store's parts share.

asyncpg with a small pool. The SQL keeps SQLite's `?` placeholders (numbered here, `_numbered`), so
each part reads like its SQLite twin. Every write transaction bumps the `changes` counter row:
that row's lock orders writers (as SQLite's BEGIN IMMEDIATE does) and its value is `change_mark`,
which moves on any commit by any process. asyncpg and connection errors are translated here, at
the boundary, into `StoreUnavailable`; they name the URL only as `url.redacted` shows it, and their
text goes through `url.scrubbed` (a driver may quote what it was given).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from milvus_memory_mcp.errors import StoreUnavailable
from milvus_memory_mcp.history.postgres.migrations import apply_migrations
from milvus_memory_mcp.history.postgres.url import problem, redacted, scrubbed

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

logger = logging.getLogger(__name__)
T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\?")
POOL_SIZE = 4
TIMEOUT = 10.0  # seconds for connecting and for one statement


def _numbered(sql: str) -> str:
    """`?` placeholders as `$1, $2, ...` (the SQL holds no `?` inside literals or operators)."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


class Conn:
    """One connection with SQLite-style calls: `?` placeholders, rows as tuples."""

    def __init__(self, conn: PoolConnectionProxy | asyncpg.Connection) -> None:
        self.raw = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self.raw.execute(_numbered(sql), *args)

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self.raw.executemany(_numbered(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.raw.fetch(_numbered(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        row = await self.raw.fetchrow(_numbered(sql), *args)
        return None if row is None else tuple(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.raw.fetchval(_numbered(sql), *args)


def _errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    # asyncio.TimeoutError is TimeoutError from Python 3.11 on, not before; InternalClientError: a
    # connection the server ended while it was idle ("another operation is in progress")
    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
        asyncio.TimeoutError,
    )


# The connection holding the cluster write lock, while the current task holds it (postgres/lock.py):
# every call of that task then runs on it, so a write commits only while the lock is still held.
held: ContextVar[Conn | None] = ContextVar("held", default=None)


class Database:
    """One PostgreSQL database, for one collection; `open` connects and migrates it."""

    def __init__(self, url: str, collection: str) -> None:
        self._url = url
        self._collection = collection
        self._pool: asyncpg.Pool | None = None
        self._notes = 0  # write timestamps this process noted (history/reembed.py `note_vector_ts`)

    def _detail(self, e: BaseException) -> str:
        """The error's text, without any secret of the URL."""
        return scrubbed(str(e), self._url) or type(e).__name__

    def _failed(self, e: BaseException) -> StoreUnavailable:
        detail = self._detail(e)
        logger.error("PostgreSQL call failed: %s: %s", type(e).__name__, detail)
        return StoreUnavailable(f"The history database at {redacted(self._url)} failed: {detail}")

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("The history database is not open.")
        try:
            if (conn := held.get()) is not None:
                return await fn(conn)
            async with pool.acquire(timeout=TIMEOUT) as conn:
                return await fn(Conn(conn))
        except _errors() as e:
            raise self._failed(e) from e

    async def _transaction(self, fn: Callable[[Conn], Awaitable[None]]) -> None:
        """Run `fn` in one write transaction that also bumps the change counter (first: it orders writers)."""

        async def run(conn: Conn) -> None:
            async with conn.raw.transaction():
                await conn.execute("UPDATE changes SET n = n + 1 WHERE id = 1")
                await fn(conn)

        await self._run(run)

    async def change_mark(self) -> tuple[int, int]:
        """A value that differs after any commit to the database, by this process or another."""

        async def run(conn: Conn) -> tuple[int, int]:
            return 0, int(await conn.fetchval("SELECT n FROM changes WHERE id = 1"))

        return await self._run(run)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            import asyncpg
        except ImportError as e:
            raise StoreUnavailable(
                "MEMORY_HISTORY_URL needs the asyncpg driver: pip install 'milvus-memory-mcp[postgres]'."
            ) from e

        if (why := problem(self._url)) is not None:  # Settings refuses it first; asyncpg's errors quote it
            raise StoreUnavailable(f"MEMORY_HISTORY_URL: {why}.")
        try:
            pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=POOL_SIZE, timeout=TIMEOUT, command_timeout=TIMEOUT
            )
        except (*_errors(), ValueError) as e:
            raise StoreUnavailable(
                f"Could not connect to the history database at {redacted(self._url)}: {self._detail(e)}. "
                "Check MEMORY_HISTORY_URL and that the server is running."
            ) from e
        try:
            async with pool.acquire() as conn:
                for name in await apply_migrations(conn):
                    logger.info("history database migrated: %s", name)
        except BaseException as e:
            pool.terminate()  # at once, cancelled or not
            if isinstance(e, _errors()):
                raise self._failed(e) from e
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
