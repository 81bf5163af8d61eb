"""The PostgreSQL history schema: named migrations, applied in order, each once, each atomically.

Its own list (the SQLite file's lives in history/migrations.py): the first creates the schema the
SQLite migrations reach, with PostgreSQL types. Append a (name, SQL) pair to change it; never edit
one that has shipped. Ids and scope fields sort by code point (COLLATE "C", as in SQLite) whatever the database's
collation, so keyset cursors page in SQLite's order. Each runs in one transaction with its record
in `migrations`, under an advisory lock, so processes starting together apply it once and a re-run
is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

LOCK_KEY = 0x6D656D6F7279  # pg_advisory_xact_lock key of the migrations ("memory")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_schema",
        """
        CREATE TABLE memories (
            collection TEXT NOT NULL,
            id TEXT COLLATE "C" NOT NULL,
            memory TEXT NOT NULL,
            hash TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            agent_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            run_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            deleted_at BIGINT,
            PRIMARY KEY (collection, id)
        );
        CREATE INDEX memories_live_order ON memories (collection, deleted_at, created_at, id);
        CREATE INDEX memories_user ON memories (collection, user_id, created_at, id);
        CREATE INDEX memories_hash ON memories (collection, hash);
        CREATE TABLE history (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT COLLATE "C" NOT NULL UNIQUE,
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            event TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE', 'NONE', 'RESTORE')),
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            agent_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            run_id TEXT COLLATE "C" NOT NULL DEFAULT '',
            actor TEXT,
            role TEXT,
            reason TEXT,
            source_hash TEXT,
            metadata TEXT
        );
        CREATE INDEX history_memory ON history (collection, memory_id, seq);
        CREATE INDEX history_user ON history (collection, user_id, memory_id, seq);
        CREATE TABLE pending (
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            PRIMARY KEY (collection, memory_id)
        );
        CREATE TABLE embeddings (
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            vector BYTEA NOT NULL,
            words TEXT NOT NULL,
            PRIMARY KEY (model, hash)
        );
        CREATE TABLE store_state (
            collection TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (collection, key)
        );
        CREATE TABLE reembedded (
            collection TEXT NOT NULL,
            target TEXT NOT NULL,
            id TEXT NOT NULL,
            hash TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (collection, target, id)
        );
        CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
        INSERT INTO changes VALUES (1, 0);
        """,
    ),
]


async def apply_migrations(conn: PoolConnectionProxy, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Run the named migrations not yet recorded, in order; returns the names applied.

    Each runs in its own transaction with its record in `migrations`: one that fails is rolled
    back whole (and raises), leaving the earlier ones applied."""
    applied = []
    for name, sql in MIGRATIONS if migrations is None else migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (n BIGINT GENERATED ALWAYS AS IDENTITY, "
                "name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            if await conn.fetchval("SELECT 1 FROM migrations WHERE name = $1", name):
                continue
            await conn.execute(sql)  # a script: several statements, no parameters
            await conn.execute("INSERT INTO migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied
