"""50 tool calls in flight at once through one MCP client: the outcome equals some serial order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp import doctor, filters
from milvus_memory_mcp.records import Change, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import ToolFailed, call

pytestmark = pytest.mark.anyio


def count_in_flight(service: MemoryService, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Track how many core calls run at once (proof that the 50 calls really overlap)."""
    seen = {"now": 0, "max": 0}

    def counted(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
            try:
                return await method(*args, **kwargs)
            finally:
                seen["now"] -= 1

        return wrapper

    for name in ["add", "update", "delete", "search"]:
        monkeypatch.setattr(service, name, counted(getattr(service, name)))
    return seen


async def test_fifty_concurrent_calls_lose_no_update_and_keep_history_complete_and_ordered(
    client: Client, service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def add(text: str) -> dict[str, Any]:
        return (await call(client, "add_memory", messages=text, user_id="c"))["results"][0]

    target = await add("Version 0")
    doomed = [await add(f"Doomed fact {i}") for i in range(10)]
    contested = await add("Contested v0")

    calls: list[tuple[str, dict[str, Any]]] = []
    calls += [("update_memory", {"memory_id": target["id"], "data": f"Version {i}"}) for i in range(1, 16)]
    calls += [("delete_memory", {"memory_id": d["id"]}) for d in doomed]
    calls += [("add_memory", {"messages": f"Parallel fact {i}", "user_id": "c"}) for i in range(10)]
    calls += [("add_memory", {"messages": "Same text from five callers", "user_id": "c"}) for _ in range(5)]
    calls += [("search_memories", {"query": "version", "user_id": "c"}) for _ in range(5)]
    calls += [("update_memory", {"memory_id": contested["id"], "data": f"Contested v{j}"}) for j in range(1, 5)]
    calls += [("delete_memory", {"memory_id": contested["id"]})]
    assert len(calls) == 50

    outcomes: list[dict[str, Any] | str] = [""] * len(calls)
    in_flight = count_in_flight(service, monkeypatch)

    async def run(i: int, tool: str, args: dict[str, Any]) -> None:
        try:
            outcomes[i] = await call(client, tool, **args)
        except ToolFailed as e:
            outcomes[i] = str(e)

    async with anyio.create_task_group() as tg:
        for i, (tool, args) in enumerate(calls):
            tg.start_soon(run, i, tool, args)

    assert in_flight["max"] >= 25, in_flight

    errors = [(calls[i], o) for i, o in enumerate(outcomes) if isinstance(o, str)]
    # Only updates of the memory deleted meanwhile may fail, and only because it is gone.
    assert all(c[1].get("memory_id") == contested["id"] and "No memory" in o for c, o in errors), errors
    assert not any("locked" in o for _, o in errors)

    # Every acknowledged update of the target is in its history exactly once, in a chain.
    events = (await call(client, "memory_history", memory_id=target["id"]))["events"]
    assert [e["event"] for e in events] == ["ADD"] + ["UPDATE"] * 15
    assert sorted(e["new_memory"] for e in events[1:]) == sorted(f"Version {i}" for i in range(1, 16))
    for previous, event in zip(events, events[1:], strict=False):
        assert event["old_memory"] == previous["new_memory"]
        assert event["updated_at"] >= previous["updated_at"]
    final = (await call(client, "get_memory", memory_id=target["id"]))["memory"]
    assert final == events[-1]["new_memory"]
    [row] = await service.vectors.get([target["id"]])
    assert row.memory == final

    for d in doomed:
        history = (await call(client, "memory_history", memory_id=d["id"]))["events"]
        assert [e["event"] for e in history] == ["ADD", "DELETE"]

    done = list(zip(calls, outcomes, strict=True))
    same = [o for (_, args), o in done if args.get("messages") == "Same text from five callers"]
    results = [r["results"][0] for r in same if isinstance(r, dict)]
    assert sorted(r["event"] for r in results) == ["ADD", "NONE", "NONE", "NONE", "NONE"]
    assert len({r["id"] for r in results}) == 1

    history = (await call(client, "memory_history", memory_id=contested["id"]))["events"]
    updated = sum(1 for (_, args), o in done if args.get("data", "").startswith("Contested") and isinstance(o, dict))
    assert [e["event"] for e in history] == ["ADD"] + ["UPDATE"] * updated + ["DELETE"]

    listed = (await call(client, "list_memories", user_id="c"))["results"]
    assert sorted(m["memory"] for m in listed) == sorted(
        [final, "Same text from five callers"] + [f"Parallel fact {i}" for i in range(10)]
    )
    report = await doctor.check(service)
    assert report.clean, report.lines()


@pytest.mark.parametrize("mode", ["dense", "keyword"])
async def test_a_filtered_search_returns_no_memory_that_stopped_matching_while_it_ran(
    service: MemoryService, mode: str
) -> None:
    """The search index confines a filtered search to the ids SQLite matched, then reads the hits'
    rows: a write committed in between (here: committed to SQLite, the search index not told yet,
    as during any write) must not put a memory that no longer matches in the answer."""
    alice = Scope("alice")
    added = await service.add("Plays tennis on Sundays", alice, metadata={"cat": "a"}, infer=False)
    tennis = (await service.history.get(added.results[0].id)) or pytest.fail("not stored")
    where = filters.within(alice, {"cat": "a"})

    async def found() -> list[str]:
        if mode == "keyword":
            return [r.id for r, _ in await service.vectors.search_keywords("tennis", where, 5)]
        [vector] = await service.embedder.embed(["tennis"])
        return [r.id for r, _ in await service.vectors.search(vector, where, 5)]

    assert await found() == [tennis.id]
    moved = tennis.updated(metadata={"cat": "b"}, updated_at=tennis.updated_at + 1)
    await service.history.commit([Change.of("UPDATE", tennis, moved, "test")])
    assert await found() == []
