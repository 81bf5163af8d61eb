"""`reembed`'s record on PostgreSQL: the twin of history/reembed.py."""

from __future__ import annotations

from collections.abc import Collection

from milvus_memory_mcp.history.log import MEMORY_COLUMNS, _record
from milvus_memory_mcp.history.postgres.database import Conn, Database
from milvus_memory_mcp.history.reembed import PRUNE_EVERY, UNKNOWN_SCOPE, note_ts_sql, prune_before, ts_keys, ts_values
from milvus_memory_mcp.records import MemoryRecord

_M_COLUMNS = ", ".join(f"m.{c}" for c in MEMORY_COLUMNS.split(", "))
_JOIN = "r.collection = m.collection AND r.target = ? AND r.id = m.id"
_UP_TO_DATE = "r.hash = m.hash AND r.updated_at = m.updated_at"
_NOTE_TS = (
    "INSERT INTO store_state VALUES {rows} ON CONFLICT (collection, key) "
    "DO UPDATE SET value = GREATEST(store_state.value::bigint, EXCLUDED.value::bigint)::text"
)
_PRUNE_TS = "DELETE FROM store_state WHERE collection = ? AND key LIKE 'vector_ts %' AND value::bigint < ?"
_STATE = "SELECT key, value FROM store_state WHERE collection = ? AND key NOT LIKE 'vector_ts%'"
_PUT_STATE = (
    "INSERT INTO store_state VALUES (?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET value = EXCLUDED.value"
)


async def _put(conn: Conn, collection: str, values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            await conn.execute("DELETE FROM store_state WHERE collection = ? AND key = ?", collection, key)
        else:
            await conn.execute(_PUT_STATE, collection, key, value)


class ReembedState(Database):
    async def store_state(self) -> dict[str, str]:
        async def run(conn: Conn) -> dict[str, str]:
            return dict(await conn.fetch(_STATE, self._collection))

        return await self._run(run)

    async def set_store_state(self, values: dict[str, str | None], *, forget_target: str | None = None) -> None:
        """Set (None: remove) keys in one transaction; `forget_target`'s recorded rows go with them."""

        async def run(conn: Conn) -> None:
            await _put(conn, self._collection, values)
            if forget_target is not None:
                forget = "DELETE FROM reembedded WHERE collection = ? AND target = ?"
                await conn.execute(forget, self._collection, forget_target)

        await self._transaction(run)

    async def note_vector_ts(self, ts: int, terms: Collection[str] | None = None) -> None:
        """Record a Milvus server timestamp later than a write (kept: the largest per key), for the
        collection and for the scope terms of the memories it changed (`ts_keys`); see `vector_ts_of`."""

        sql, args = note_ts_sql(_NOTE_TS, self._collection, ts, terms)
        self._notes += 1
        prune = self._notes % PRUNE_EVERY == 0

        async def run(conn: Conn) -> None:
            await conn.execute(sql, *args)
            if prune:
                await conn.execute(_PRUNE_TS, self._collection, prune_before(ts))

        await self._run(run)  # one statement: atomic; not a change to the memories (no counter bump)

    async def vector_ts_of(self, terms: Collection[str]) -> dict[str, int]:
        """The timestamps noted for the collection (key ""), for unknown scopes ("*") and for these
        scope terms; a key never noted is absent."""
        keys = ts_keys([*terms, UNKNOWN_SCOPE])

        async def run(conn: Conn) -> dict[str, int]:
            query = "SELECT key, value FROM store_state WHERE collection = ? AND key = ANY(?)"
            return ts_values(await conn.fetch(query, self._collection, keys))

        return await self._run(run)

    async def reembed_todo(self, target: str, limit: int) -> list[MemoryRecord]:
        """Live memories whose current state `target` does not hold yet."""

        async def run(conn: Conn) -> list[MemoryRecord]:
            rows = await conn.fetch(
                f"SELECT {_M_COLUMNS} FROM memories m LEFT JOIN reembedded r ON {_JOIN} WHERE m.collection = ? "
                f"AND m.deleted_at IS NULL AND (r.id IS NULL OR NOT ({_UP_TO_DATE})) LIMIT ?",
                target,
                self._collection,
                limit,
            )
            return [_record(r) for r in rows]

        return await self._run(run)

    async def reembed_gone(self, target: str, limit: int) -> list[str]:
        """Ids `target` holds that are no longer live."""

        async def run(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT r.id FROM reembedded r LEFT JOIN memories m ON m.collection = r.collection AND m.id = r.id "
                "WHERE r.collection = ? AND r.target = ? AND (m.id IS NULL OR m.deleted_at IS NOT NULL) LIMIT ?",
                self._collection,
                target,
                limit,
            )
            return [r[0] for r in rows]

        return await self._run(run)

    async def reembed_progress(self, target: str) -> tuple[int, int]:
        """(live memories `target` holds up to date, live memories)."""

        async def run(conn: Conn) -> tuple[int, int]:
            done = await conn.fetchval(
                f"SELECT count(*) FROM memories m JOIN reembedded r ON {_JOIN} "
                f"WHERE m.collection = ? AND m.deleted_at IS NULL AND {_UP_TO_DATE}",
                target,
                self._collection,
            )
            live_sql = "SELECT count(*) FROM memories WHERE collection = ? AND deleted_at IS NULL"
            live = await conn.fetchval(live_sql, self._collection)
            return int(done), int(live)

        return await self._run(run)

    async def record_reembedded(self, target: str, written: list[MemoryRecord], removed: list[str]) -> None:
        """`target` durably holds `written` and no longer holds `removed`."""

        async def run(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO reembedded VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection, target, id) "
                "DO UPDATE SET hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at",
                [(self._collection, target, r.id, r.hash, r.updated_at) for r in written],
            )
            if removed:
                sql = "DELETE FROM reembedded WHERE collection = ? AND target = ? AND id = ANY(?::text[])"
                await conn.execute(sql, self._collection, target, removed)

        await self._transaction(run)

    async def switch_collection(self, target: str, model: str, retired: str, old_model: str) -> None:
        """Make `target` the active collection, in one transaction (see history/reembed.py)."""

        async def run(conn: Conn) -> None:
            keys: dict[str, str | None] = {"active": target, "active_model": model, "retired": retired}
            await _put(conn, self._collection, keys | {"target": None, "target_model": None, "target_dims": None})
            sql = "DELETE FROM reembedded WHERE collection = ? AND target = ?"
            await conn.execute(sql, self._collection, target)
            if old_model != model:
                await conn.execute("DELETE FROM embeddings WHERE model = ?", old_model)

        await self._transaction(run)
