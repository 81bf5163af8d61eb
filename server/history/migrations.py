"""The history database's schema: named migrations, applied in order, each once, each atomically.

Add a migration by appending a (name, SQL) pair; never edit one that has shipped. `apply_migrations`
records each name in the `migrations` table in the same transaction as its SQL, so a re-run is a
no-op and a failed migration leaves the database as it was (tests/unit/test_migrations.py).
"""

from __future__ import annotations

import sqlite3

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
    (
        # Undo (restore_memory) is an event of its own, and each event keeps the metadata it left,
        # so a restore or an as_of read brings the metadata back too (NULL in older rows: unknown).
        "0004_history_restore_events_and_metadata",
        """
        CREATE TABLE history_new (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            collection TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            event TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE', 'NONE', 'RESTORE')),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            user_id TEXT NOT NULL DEFAULT '',
            agent_id TEXT NOT NULL DEFAULT '',
            run_id TEXT NOT NULL DEFAULT '',
            actor TEXT,
            role TEXT,
            reason TEXT,
            source_hash TEXT,
            metadata TEXT
        );
        INSERT INTO history_new (seq, id, collection, memory_id, old_memory, new_memory, event, created_at,
            updated_at, user_id, agent_id, run_id, actor, role, reason, source_hash)
        SELECT seq, id, collection, memory_id, old_memory, new_memory, event, created_at,
            updated_at, user_id, agent_id, run_id, actor, role, reason, source_hash FROM history;
        DROP TABLE history;
        ALTER TABLE history_new RENAME TO history;
        CREATE INDEX history_memory ON history (collection, memory_id, seq);
        CREATE INDEX history_user ON history (collection, user_id, memory_id, seq);
        """,
    ),
    (
        # `reembed`: which Milvus collection is active (and with which embedder), the one being
        # built beside it, and each memory's state the latter holds durably (id, hash, updated_at).
        "0005_reembed_state",
        """
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
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (collection, target, id)
        );
        """,
    ),
]


def apply_migrations(conn: sqlite3.Connection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Run the named migrations not yet recorded, in order; returns the names applied.

    Each runs in its own transaction with its record in `migrations`: one that fails is rolled
    back whole (and raises), leaving the earlier ones applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS if migrations is None else migrations:
        if name in done:
            continue
        try:
            conn.execute("BEGIN")
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, datetime('now'))", (name,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _statements(script: str) -> list[str]:
    """The complete statements of a migration script (executescript would commit as it goes)."""
    out, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip().strip(";").strip():
                out.append(current)
            current = ""
    if current.strip().strip(";").strip():
        raise ValueError(f"incomplete SQL statement in a migration: {current.strip()[:80]!r}")
    return out
