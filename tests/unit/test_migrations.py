"""The history database's migrations: applied in order, once each, and all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from milvus_memory_mcp.history.migrations import MIGRATIONS, apply_migrations


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_database_gets_every_migration_in_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.db")
    assert apply_migrations(conn) == [name for name, _ in MIGRATIONS]
    assert {"memories", "history", "pending", "embeddings", "migrations"} <= tables(conn)
    recorded = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY rowid")]
    assert recorded == [name for name, _ in MIGRATIONS]


def test_running_the_migrations_again_is_a_no_op(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.db")
    apply_migrations(conn)
    conn.execute(
        "INSERT INTO memories (collection, id, memory, hash, created_at, updated_at) VALUES ('c', 'i', 'm', 'h', 1, 1)"
    )
    schema = list(conn.execute("SELECT sql FROM sqlite_master ORDER BY name"))
    assert apply_migrations(conn) == []
    assert list(conn.execute("SELECT sql FROM sqlite_master ORDER BY name")) == schema
    assert conn.execute("SELECT count(*) FROM memories").fetchone() == (1,)


def test_a_failing_migration_is_rolled_back_whole_and_the_earlier_ones_stay(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.db")
    good = ("0001_good", "CREATE TABLE a (x INTEGER);")
    bad = ("0002_bad", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1); INSERT INTO no_such_table VALUES (2);")
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        apply_migrations(conn, [good, bad])
    assert "a" in tables(conn) and "b" not in tables(conn)  # 0002's first statements were undone
    assert conn.execute("SELECT count(*) FROM a").fetchone() == (0,)
    assert [r[0] for r in conn.execute("SELECT name FROM migrations")] == ["0001_good"]
    fixed = ("0002_bad", "CREATE TABLE b (y INTEGER);")
    assert apply_migrations(conn, [good, fixed]) == ["0002_bad"]  # a fixed release applies it later


def test_a_database_of_an_earlier_release_gets_only_the_newer_migrations(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.db")
    apply_migrations(conn, MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO history (id, collection, memory_id, event, created_at, updated_at) "
        "VALUES ('e', 'c', 'm', 'ADD', 1, 1)"
    )
    assert apply_migrations(conn) == [name for name, _ in MIGRATIONS[1:]]
    assert conn.execute("SELECT id, event FROM history").fetchall() == [("e", "ADD")]  # kept by 0002's table copy


def test_a_database_of_the_previous_release_takes_restore_events_and_event_metadata(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.db")
    names = [name for name, _ in MIGRATIONS]
    previous = MIGRATIONS[: names.index("0004_history_restore_events_and_metadata")]
    apply_migrations(conn, previous)
    conn.execute(
        "INSERT INTO history (id, collection, memory_id, new_memory, event, created_at, updated_at, actor) "
        "VALUES ('e', 'c', 'm', 'text', 'NONE', 1, 2, 'alice')"
    )
    with pytest.raises(sqlite3.IntegrityError):  # the previous release refuses the new event
        conn.execute(
            "INSERT INTO history (id, collection, memory_id, event, created_at, updated_at) "
            "VALUES ('r', 'c', 'm', 'RESTORE', 1, 3)"
        )
    assert apply_migrations(conn) == names[names.index("0004_history_restore_events_and_metadata") :]
    assert conn.execute("SELECT seq, id, new_memory, event, actor, metadata FROM history").fetchall() == [
        (1, "e", "text", "NONE", "alice", None)
    ]
    conn.execute(
        "INSERT INTO history (id, collection, memory_id, event, created_at, updated_at, metadata) "
        "VALUES ('r', 'c', 'm', 'RESTORE', 1, 3, '{}')"
    )
    assert conn.execute("SELECT max(seq) FROM history").fetchone() == (2,)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO history (id, collection, memory_id, event, created_at, updated_at) "
            "VALUES ('x', 'c', 'm', 'BOGUS', 1, 3)"
        )


@pytest.mark.anyio
async def test_a_database_of_the_previous_release_takes_the_reembed_state(tmp_path: Path) -> None:
    from milvus_memory_mcp.history import SQLiteHistory

    path = tmp_path / "h.db"
    conn = connect(path)
    names = [name for name, _ in MIGRATIONS]
    apply_migrations(conn, MIGRATIONS[: names.index("0005_reembed_state")])
    conn.execute(
        "INSERT INTO memories (collection, id, memory, hash, created_at, updated_at) VALUES ('c', 'i', 'm', 'h', 1, 2)"
    )
    conn.close()
    history = SQLiteHistory(path, "c")
    await history.open()
    try:
        assert await history.store_state() == {}  # no row: the collection is `settings.collection`, as before
        [todo] = await history.reembed_todo("c_1", 10)
        assert (todo.id, todo.hash, todo.updated_at) == ("i", "h", 2)
        await history.record_reembedded("c_1", [todo], [])
        assert await history.reembed_progress("c_1") == (1, 1)
        assert await history.reembed_todo("c_1", 10) == []
        await history.switch_collection("c_1", "new-model", "c", "old-model")
        assert await history.store_state() == {"active": "c_1", "active_model": "new-model", "retired": "c"}
    finally:
        await history.close()
