"""`reembed`'s record: the active Milvus collection, the one being built beside it, and its progress.

`store_state` holds, per history collection, a few keys: `active` (the Milvus collection searches
use; none: `settings.collection`), `active_model`, `target`, `target_model`, `target_dims` (the
collection being filled for another embedder) and `retired` (an old collection left to drop); also
`vector_ts`, the latest write's Milvus server timestamp (`note_vector_ts`), and `store_id` /
`store_location`, which collections this history feeds (server/stores/identity.py): not reembed's.
`reembedded` lists each memory's state (hash, updated_at) the target holds durably, so a re-run
resumes and a memory changed meanwhile is written again. The switch is one transaction
(`switch_collection`). server/core/reembed.py drives it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable

from milvus_memory_mcp.history.database import Database
from milvus_memory_mcp.history.log import MEMORY_COLUMNS, _record
from milvus_memory_mcp.records import MemoryRecord

_M_COLUMNS = ", ".join(f"m.{c}" for c in MEMORY_COLUMNS.split(", "))
_JOIN = "r.collection = m.collection AND r.target = ? AND r.id = m.id"
_UP_TO_DATE = "r.hash = m.hash AND r.updated_at = m.updated_at"
# `vector_ts` (server/stores/milvus_client.py `WriteClock`): the keys are not reembed's.
_NOTE_TS = (
    "INSERT INTO store_state VALUES {rows} ON CONFLICT (collection, key) "
    "DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))"
)
_PRUNE_TS = "DELETE FROM store_state WHERE collection = ? AND key LIKE 'vector_ts %' AND CAST(value AS INTEGER) < ?"
_STATE = "SELECT key, value FROM store_state WHERE collection = ? AND key NOT LIKE 'vector_ts%'"
TS_KEY = "vector_ts"
UNKNOWN_SCOPE = "*"
# Every PRUNE_EVERY notes, a process drops the scope terms noted more than PRUNE_AGE before (a
# Milvus timestamp is milliseconds << 18): long applied, and a term not noted counts as the
# collection's latest write, which is later, so a search still waits for at least that term's
# writes. It keeps one row per scope term from growing without bound (a run_id per session).
PRUNE_EVERY = 1000
PRUNE_AGE = (10 * 60 * 1000) << 18


def ts_keys(terms: Collection[str] | None) -> list[str]:
    """The keys a write's timestamp is noted under: the collection's, and each scope term's of the
    memories it changed ("user_id=alice"; None: scopes unknown, noted as "*")."""
    keys = [TS_KEY, *(f"{TS_KEY} {t}" for t in (terms if terms is not None else [UNKNOWN_SCOPE]))]
    return sorted(set(keys))  # one order for every writer


def prune_before(ts: int) -> int:
    return ts - PRUNE_AGE


def note_ts_sql(template: str, collection: str, ts: int, terms: Collection[str] | None) -> tuple[str, list[str]]:
    """One upsert statement of every key `ts` is noted under (atomic), and its parameters."""
    keys = ts_keys(terms)
    args = [x for key in keys for x in (collection, key, str(ts))]
    return template.format(rows=", ".join(["(?, ?, ?)"] * len(keys))), args


def ts_values(rows: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Noted timestamps by term ("": the collection's), from (key, value) rows."""
    return {key.removeprefix(TS_KEY).strip(): int(value) for key, value in rows}


def _put(conn: sqlite3.Connection, collection: str, values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            conn.execute("DELETE FROM store_state WHERE collection = ? AND key = ?", (collection, key))
        else:
            conn.execute("INSERT OR REPLACE INTO store_state VALUES (?, ?, ?)", (collection, key, value))


class ReembedState(Database):
    async def store_state(self) -> dict[str, str]:
        def run(conn: sqlite3.Connection) -> dict[str, str]:
            return dict(conn.execute(_STATE, (self._collection,)).fetchall())

        return await self._run(run)

    async def set_store_state(self, values: dict[str, str | None], *, forget_target: str | None = None) -> None:
        """Set (None: remove) keys in one transaction; `forget_target`'s recorded rows go with them."""

        def run(conn: sqlite3.Connection) -> None:
            _put(conn, self._collection, values)
            if forget_target is not None:
                forget = "DELETE FROM reembedded WHERE collection = ? AND target = ?"
                conn.execute(forget, (self._collection, forget_target))

        await self._transaction(run)

    async def note_vector_ts(self, ts: int, terms: Collection[str] | None = None) -> None:
        """Record a Milvus server timestamp later than a write (kept: the largest per key), for the
        collection and for the scope terms of the memories it changed (`ts_keys`); see `vector_ts_of`."""

        sql, args = note_ts_sql(_NOTE_TS, self._collection, ts, terms)
        self._notes += 1
        prune = self._notes % PRUNE_EVERY == 0

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(sql, args)
            if prune:
                conn.execute(_PRUNE_TS, (self._collection, prune_before(ts)))

        await self._run(run)  # each statement atomic, and no change to what the memories hold

    async def vector_ts_of(self, terms: Collection[str]) -> dict[str, int]:
        """The timestamps noted for the collection (key ""), for unknown scopes ("*") and for these
        scope terms; a key never noted is absent."""
        keys = ts_keys([*terms, UNKNOWN_SCOPE])

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ", ".join("?" * len(keys))
            query = f"SELECT key, value FROM store_state WHERE collection = ? AND key IN ({marks})"
            return ts_values(conn.execute(query, (self._collection, *keys)).fetchall())

        return await self._run(run)

    async def reembed_todo(self, target: str, limit: int) -> list[MemoryRecord]:
        """Live memories whose current state `target` does not hold yet."""

        def run(conn: sqlite3.Connection) -> list[MemoryRecord]:
            rows = conn.execute(
                f"SELECT {_M_COLUMNS} FROM memories m LEFT JOIN reembedded r ON {_JOIN} WHERE m.collection = ? "
                f"AND m.deleted_at IS NULL AND (r.id IS NULL OR NOT ({_UP_TO_DATE})) LIMIT ?",
                (target, self._collection, limit),
            )
            return [_record(r) for r in rows]

        return await self._run(run)

    async def reembed_gone(self, target: str, limit: int) -> list[str]:
        """Ids `target` holds that are no longer live."""

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT r.id FROM reembedded r LEFT JOIN memories m ON m.collection = r.collection AND m.id = r.id "
                "WHERE r.collection = ? AND r.target = ? AND (m.id IS NULL OR m.deleted_at IS NOT NULL) LIMIT ?",
                (self._collection, target, limit),
            )
            return [r[0] for r in rows]

        return await self._run(run)

    async def reembed_progress(self, target: str) -> tuple[int, int]:
        """(live memories `target` holds up to date, live memories)."""

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            done = conn.execute(
                f"SELECT count(*) FROM memories m JOIN reembedded r ON {_JOIN} "
                f"WHERE m.collection = ? AND m.deleted_at IS NULL AND {_UP_TO_DATE}",
                (target, self._collection),
            ).fetchone()[0]
            live = conn.execute(
                "SELECT count(*) FROM memories WHERE collection = ? AND deleted_at IS NULL", (self._collection,)
            ).fetchone()[0]
            return int(done), int(live)

        return await self._run(run)

    async def record_reembedded(self, target: str, written: list[MemoryRecord], removed: list[str]) -> None:
        """`target` durably holds `written` and no longer holds `removed`."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO reembedded VALUES (?, ?, ?, ?, ?)",
                [(self._collection, target, r.id, r.hash, r.updated_at) for r in written],
            )
            conn.executemany(
                "DELETE FROM reembedded WHERE collection = ? AND target = ? AND id = ?",
                [(self._collection, target, i) for i in removed],
            )

        await self._transaction(run)

    async def switch_collection(self, target: str, model: str, retired: str, old_model: str) -> None:
        """Make `target` the active collection, in one transaction: the old one is left `retired`
        (dropped next), the target's progress and the old model's cached embeddings are forgotten."""

        def run(conn: sqlite3.Connection) -> None:
            keys: dict[str, str | None] = {"active": target, "active_model": model, "retired": retired}
            _put(conn, self._collection, keys | {"target": None, "target_model": None, "target_dims": None})
            conn.execute("DELETE FROM reembedded WHERE collection = ? AND target = ?", (self._collection, target))
            if old_model != model:
                conn.execute("DELETE FROM embeddings WHERE model = ?", (old_model,))

        await self._transaction(run)
