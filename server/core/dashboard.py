"""The dashboard's activity charts: writes per day per scope, live memories over time, last writes.

One pass over the scope's events (`HistoryStore.scope_events`: ids, scope, event and time, no
texts), memories deleted since included; the latest changes from `HistoryStore.latest_events`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from milvus_memory_mcp.filters import Node
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import HistoryEntry, Scope

DAY_US = 86_400_000_000
WRITES = ("ADD", "UPDATE", "DELETE")  # a RESTORE counts as an update: the text changed back


@dataclass
class ScopeActivity:
    """One scope's series over `days` (oldest first): writes per day and live memories at each day's end."""

    scope: Scope
    days: list[str]
    writes: dict[str, list[int]] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)

    @property
    def total_writes(self) -> int:
        return sum(sum(v) for v in self.writes.values())


@dataclass
class Activity:
    scopes: list[ScopeActivity]
    latest: list[HistoryEntry]


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).date().isoformat()


async def activity(history: HistoryStore, where: Node | None, days: int, now_us: int, latest: int = 10) -> Activity:
    """Per scope, the last `days` days up to `now_us` (UTC days), and the `latest` events overall."""
    today = datetime.fromtimestamp(now_us / 1_000_000, tz=timezone.utc).date()
    labels = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    index = {d: i for i, d in enumerate(labels)}
    first = labels[0]
    writes: dict[tuple[str, str, str], dict[str, list[int]]] = {}
    live_delta: dict[tuple[str, str, str], list[int]] = {}
    live_before: dict[tuple[str, str, str], int] = {}
    memory, alive = "", False
    for memory_id, user, agent, run, event, updated_at in await history.scope_events(where):
        if memory_id != memory:  # the events come memory by memory, each one's in order
            memory, alive = memory_id, False
        key = (user, agent, run)
        counts = writes.get(key)
        if counts is None:
            counts = writes[key] = {w: [0] * days for w in WRITES}
            live_delta[key] = [0] * days
        day = _day(updated_at)
        kind = "UPDATE" if event == "RESTORE" else event
        if day in index and kind in counts:
            counts[kind][index[day]] += 1
        now_alive = alive if event == "NONE" else event != "DELETE"
        if now_alive != alive:
            step = 1 if now_alive else -1
            if day < first:
                live_before[key] = live_before.get(key, 0) + step
            elif day in index:
                live_delta[key][index[day]] += step
            alive = now_alive
    out: list[ScopeActivity] = []
    for key, counts in writes.items():
        running = live_before.get(key, 0)
        series = []
        for i in range(days):
            running += live_delta[key][i]
            series.append(running)
        user, agent, run = key
        scope = Scope(user or None, agent or None, run or None)
        out.append(ScopeActivity(scope, labels, counts, series))
    out.sort(key=lambda a: (-a.total_writes, -(a.live[-1] if a.live else 0), a.scope.key))
    return Activity(out, await history.latest_events(where, latest))


def to_json(a: Activity) -> dict[str, Any]:
    """`a` as JSON (the owner answers another process's dashboard with it)."""
    return {
        "scopes": [
            {"scope": dict(s.scope.items()), "days": s.days, "writes": s.writes, "live": s.live} for s in a.scopes
        ],
        "latest": [asdict(e) for e in a.latest],
    }


def from_json(data: dict[str, Any]) -> Activity:
    scopes = [ScopeActivity(Scope(**s["scope"]), s["days"], s["writes"], s["live"]) for s in data["scopes"]]
    return Activity(scopes, [HistoryEntry(**e) for e in data["latest"]])
