"""The cluster-wide write lock: one PostgreSQL session advisory lock per collection.

Every server process sharing the database (replicas behind a load balancer) takes it around each
write (core/writes.py `WriteLock`), so writes are serialised across processes as the in-process lock
serialises them within one. It is held on a dedicated connection, outside the pool, and while it is
held every history call of the holding task runs on that connection (`database.held`): the commit
therefore succeeds only while the lock is still held. A process that dies drops the connection and
PostgreSQL frees the lock at once; a connection lost while held fails the write's next statement
(before the commit: nothing changed; after it: the pending marks stay for the sweep).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from milvus_memory_mcp.errors import StoreUnavailable
from milvus_memory_mcp.history.postgres.database import TIMEOUT, Conn, Database, _errors, held

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)
LOCK_WAIT = 60.0  # seconds a write waits for another process's write before giving up


def lock_key(collection: str) -> int:
    """The advisory lock key of a collection (a signed 64-bit int, as pg_advisory_lock takes)."""
    digest = hashlib.sha256(f"milvus-memory-mcp write {collection}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ClusterLock(Database):
    _lock_conn: asyncpg.Connection | None = None

    async def _lock_connection(self) -> asyncpg.Connection:
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            import asyncpg

            settings = {"lock_timeout": f"{int(LOCK_WAIT * 1000)}ms", "application_name": "milvus-memory-mcp lock"}
            conn = await asyncpg.connect(
                self._url, timeout=int(TIMEOUT), command_timeout=TIMEOUT, server_settings=settings
            )
            self._lock_conn = conn
        return conn

    def _drop_lock_connection(self) -> None:
        """Close the lock connection at once (which frees the lock if it was granted)."""
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            conn.terminate()

    async def _lock(self) -> asyncpg.Connection:
        """The lock connection, holding the lock; a kept connection found dead is replaced once."""
        reused = self._lock_conn is not None
        conn = await self._lock_connection()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", lock_key(self._collection), timeout=LOCK_WAIT + TIMEOUT)
        except _errors() as e:
            if not reused or type(e).__name__ == "LockNotAvailableError":
                raise
            logger.info("the write lock's connection was lost while idle; reconnecting")
            self._drop_lock_connection()
            conn = await self._lock_connection()
            await conn.execute("SELECT pg_advisory_lock($1)", lock_key(self._collection), timeout=LOCK_WAIT + TIMEOUT)
        return conn

    @asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Hold the collection's write lock; history calls of this task run on the lock's connection."""
        if self._pool is None:
            raise StoreUnavailable("The history database is not open.")
        try:
            conn = await self._lock()
        except BaseException as e:
            self._drop_lock_connection()  # granted or not, a cancelled or failed wait leaves nothing held
            if isinstance(e, _errors()):
                if type(e).__name__ == "LockNotAvailableError":
                    raise StoreUnavailable(
                        f"Another server process has held the write lock for over {LOCK_WAIT:.0f} s; try again."
                    ) from e
                raise self._failed(e) from e
            raise
        token = held.set(Conn(conn))
        try:
            yield
        finally:
            held.reset(token)
            with anyio.CancelScope(shield=True):
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(self._collection))
                except _errors() as e:
                    logger.warning("could not release the write lock (%s); closing its connection", self._detail(e))
                    self._drop_lock_connection()

    async def close(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            try:
                await conn.close(timeout=TIMEOUT)
            except _errors():
                conn.terminate()
        await super().close()
