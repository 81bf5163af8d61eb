"""The dashboard's activity charts: writes per day per scope, live memories over time, last writes.

Read from the history's export pages (every memory of the scope, deleted ones included, with its
events), so no new SQL: one pass over the scope's events, in pages of PAGE memories.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from milvus_memory_mcp.filters import Node
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import HistoryEntry, Scope

PAGE = 2000  # memories per export page (10k memories: ~0.6 s in all)
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
    last: list[tuple[int, str, HistoryEntry]] = []
    after: tuple[int, str] | None = None
    while True:
        page = await history.export_page(where, after, PAGE)
        for record, events in page:
            key = record.scope.key
            counts = writes.setdefault(key, {w: [0] * days for w in WRITES})
            delta = live_delta.setdefault(key, [0] * (days + 1))
            alive = False
            for e in events:
                day = _day(e.updated_at)
                kind = "UPDATE" if e.event == "RESTORE" else e.event
                if day in index and kind in counts:
                    counts[kind][index[day]] += 1
                now_alive = alive if e.event == "NONE" else e.event != "DELETE"
                if now_alive != alive:
                    step = 1 if now_alive else -1
                    if day < first:
                        live_before[key] = live_before.get(key, 0) + step
                    elif day in index:
                        delta[index[day]] += step
                    alive = now_alive
                if e.event != "NONE":
                    entry = (e.updated_at, e.id, e)
                    if len(last) < latest:
                        heapq.heappush(last, entry)
                    else:
                        heapq.heappushpop(last, entry)
        if len(page) < PAGE:
            break
        after = (page[-1][0].created_at, page[-1][0].id)
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
    return Activity(out, [e for _, _, e in sorted(last, key=lambda t: (t[0], t[1]), reverse=True)])
