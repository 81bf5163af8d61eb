"""The dashboard's pure parts and its activity read: a real SQLite history file, events at chosen times."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from milvus_memory_mcp.core.dashboard import activity
from milvus_memory_mcp.filters import scope_conditions
from milvus_memory_mcp.history import make_history
from milvus_memory_mcp.records import HistoryEntry, MemoryRecord, Scope
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.ui.backend import Refused
from milvus_memory_mcp.ui.charts import writes_chart
from milvus_memory_mcp.ui.routes import _local
from milvus_memory_mcp.ui.session import host_allowed
from milvus_memory_mcp.ui.views import belief_at, json_object, parse_local_time, timeline, word_diff

pytestmark = pytest.mark.anyio
DAY = 86_400_000_000


def us(day: int, hour: int = 12) -> int:
    return int(datetime(2026, 11, day, hour, tzinfo=timezone.utc).timestamp() * 1_000_000)


def memory(mid: str, user: str, events: list[tuple[str, int, str | None]]) -> tuple[MemoryRecord, list[HistoryEntry]]:
    """A memory and its events [(event, time, text after)]; its record is the state after the last."""
    history, old = [], None
    for n, (event, at, text) in enumerate(events):
        history.append(
            HistoryEntry(f"{mid}-{n}", mid, old, text, event, at, at, user, None, None, actor="test")  # type: ignore[arg-type]
        )
        old = text if text is not None else old
    last_event, last_at, _ = events[-1]
    record = MemoryRecord(
        mid, old or "", "h", {}, user, None, None, events[0][1], last_at, last_at if last_event == "DELETE" else None
    )
    return record, history


async def test_activity_counts_writes_per_day_and_live_memories_per_scope(tmp_path: Path) -> None:
    history = make_history(Settings(data_dir=tmp_path))
    await history.open()
    try:
        items = [
            memory("a1", "alice", [("ADD", us(1), "one")]),  # before the window: live all along
            memory("a2", "alice", [("ADD", us(26), "two"), ("UPDATE", us(27), "two!"), ("DELETE", us(28), None)]),
            memory("a3", "alice", [("ADD", us(27), "three"), ("DELETE", us(27, 13), None), ("RESTORE", us(28), "3")]),
            memory("b1", "bob", [("ADD", us(28, 9), "bob's"), ("NONE", us(28, 13), "bob's")]),
        ]
        await history.import_records([(r, h, None) for r, h in items], "test-model")
        result = await activity(history, None, 3, us(28, 20))
        by_user = {a.scope.user_id: a for a in result.scopes}
        alice = by_user["alice"]
        assert alice.days == ["2026-11-26", "2026-11-27", "2026-11-28"]
        assert alice.writes == {"ADD": [1, 1, 0], "UPDATE": [0, 1, 1], "DELETE": [0, 1, 1]}  # RESTORE: an update
        assert alice.live == [2, 2, 2]  # a1 throughout; a2 until the 28th; a3 added, deleted, restored
        assert by_user["bob"].writes["ADD"] == [0, 0, 1] and by_user["bob"].live == [0, 0, 1]
        assert [e.event for e in result.latest][:2] == ["RESTORE", "DELETE"]  # newest first, NONE left out
        assert all(e.event != "NONE" for e in result.latest)
        only_bob = await activity(history, scope_conditions(Scope(user_id="bob")), 3, us(28, 20))
        assert [a.scope.user_id for a in only_bob.scopes] == ["bob"]
        svg = str(writes_chart(alice))
        assert svg.startswith("<svg") and "2026-11-28: 0 added, 1 updated, 1 deleted; 2 live" in svg
    finally:
        await history.close()


async def test_chart_escapes_the_scope() -> None:
    from milvus_memory_mcp.core.dashboard import ScopeActivity

    a = ScopeActivity(Scope(user_id='<script>"x"'), ["2026-11-28"], {"ADD": [1], "UPDATE": [0], "DELETE": [0]}, [1])
    svg = str(writes_chart(a))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and 'style="' not in svg


def test_word_diff_marks_inserted_and_deleted_words() -> None:
    assert word_diff("Alice likes tea", "Alice likes green tea") == [
        ("same", "Alice likes"),
        ("ins", " green"),
        ("same", " tea"),
    ]
    assert word_diff(None, "new") == [("ins", "new")]
    assert word_diff("old", None) == [("del", "old")]
    assert word_diff("completely different words", "nothing alike here") == [
        ("del", "completely different words"),
        ("ins", "nothing alike here"),
    ]


def test_belief_at_and_timeline() -> None:
    events = [
        {"id": "e1", "event": "ADD", "old_memory": None, "new_memory": "v1", "updated_at": "2026-11-01T00:00:00+00:00"},
        {
            "id": "e2",
            "event": "UPDATE",
            "old_memory": "v1",
            "new_memory": "v2",
            "updated_at": "2026-11-02T00:00:00+00:00",
        },
        {
            "id": "e3",
            "event": "DELETE",
            "old_memory": "v2",
            "new_memory": None,
            "updated_at": "2026-11-03T00:00:00+00:00",
        },
    ]
    assert belief_at(events, parse_local_time("2026-10-31T00:00")).text is None
    assert belief_at(events, parse_local_time("2026-11-01T12:00")).text == "v1"
    assert belief_at(events, parse_local_time("2026-11-02T00:00:00")).text == "v2"
    gone = belief_at(events, parse_local_time("2026-11-04T00:00"))
    assert gone.text is None and "deleted" in gone.note
    shown = timeline(events)
    assert [e["id"] for e in shown] == ["e3", "e2", "e1"] and [e["restorable"] for e in shown] == [False, True, True]
    with pytest.raises(Refused, match="as_of is not a date"):
        parse_local_time("soon")
    # Times whose UTC falls outside years 1-9999 (the tools take them too): before, or after, everything.
    first = belief_at(events, parse_local_time("0001-01-01T00:00:00+01:00"))
    assert first.text is None and first.at == "0001-01-01 00:00+01:00" and "did not exist" in first.note
    last = belief_at(events, parse_local_time("9999-12-31T23:59:59-01:00"))
    assert last.text is None and last.at == "9999-12-31 23:59-01:00" and "deleted" in last.note


def test_form_json_and_redirects_and_hosts() -> None:
    assert json_object("", "metadata") is None and json_object('{"a": 1}', "metadata") == {"a": 1}
    with pytest.raises(Refused, match="metadata must be a JSON object"):
        json_object("[1]", "metadata")
    assert _local("/ui/memory/x") == "/ui/memory/x"
    assert _local("https://evil.example/ui/") == "" and _local("//evil.example") == "" and _local("/mcp") == ""
    allowed = ["127.0.0.1:*", "localhost:*", "memory.example.com:8000"]
    assert host_allowed("127.0.0.1:8765", allowed) and host_allowed("localhost", allowed)
    assert host_allowed("memory.example.com:8000", allowed)
    assert not host_allowed("evil.example:8765", allowed) and not host_allowed("127.0.0.1.evil.example:80", allowed)
    assert not host_allowed("127.0.0.1:80x", allowed)
