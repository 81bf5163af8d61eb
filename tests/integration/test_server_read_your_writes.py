"""Read-your-writes on the Milvus server path without Strong consistency's wait, on a real Milvus
2.3.5 standalone and both histories: a search right after a write sees it, from the process that
wrote or from another service on the same history and collection (a replica), deletes and updates
included. The last tests show the same checks fail when searches do not wait for the recorded write
(Eventually consistency, or only the searching process's own timestamp: pymilvus's Session)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from milvus_memory_mcp.errors import StoreUnavailable
from milvus_memory_mcp.history import HistoryStore, make_history
from milvus_memory_mcp.history.reembed import PRUNE_AGE, PRUNE_EVERY
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.milvus import MilvusStore
from milvus_memory_mcp.stores.milvus_client import WriteClock

from ..conftest import HISTORIES, drop_collection, server_settings
from ..support.milvus_server import MilvusStandalone

pytestmark = [pytest.mark.anyio, HISTORIES]
USER = Scope(user_id="ryw")
TOPICS = ["sailing", "chess", "pottery", "salsa dancing", "rock climbing"]


@pytest.fixture
def shared(milvus_server: MilvusStandalone, tmp_path: Path, history: str | None) -> Any:
    """Settings of one deployment: one collection on the server, one history (SQLite file or PostgreSQL)."""
    extra: dict[str, Any] = {"history_url": history} if history else {}
    settings = server_settings(milvus_server, tmp_path / "data", **extra)
    yield settings
    drop_collection(milvus_server, settings.collection)


@pytest.fixture
async def writer(shared: Settings, local_embedder) -> AsyncIterator[MemoryService]:
    async with MemoryService(shared, embedder=local_embedder) as svc:
        await svc.ready()
        yield svc


@pytest.fixture
async def reader(shared: Settings, local_embedder, writer: MemoryService) -> AsyncIterator[MemoryService]:
    """A second service on the same stores, opened after the writer (so it serves the same collection)."""
    async with MemoryService(shared, embedder=local_embedder) as svc:
        await svc.ready()
        yield svc


async def found(svc: MemoryService, query: str, limit: int = 10) -> list[str]:
    return [h.memory for h in (await svc.search(query, USER, limit=limit)).results]


async def test_add_then_search_at_once_finds_it_in_the_writer_and_in_another_replica(
    writer: MemoryService, reader: MemoryService
) -> None:
    for i, topic in enumerate(TOPICS):
        text = f"Took up {topic} in week {i}"
        await writer.add(text, USER, infer=False)
        assert text in await found(reader, f"Took up {topic}", 3), f"the other replica missed {topic!r}"
        assert text in await found(writer, f"Took up {topic}", 3), f"the writer missed {topic!r}"


async def test_delete_then_search_at_once_misses_it_in_both(writer: MemoryService, reader: MemoryService) -> None:
    for topic in TOPICS:
        text = f"Keeps a {topic} diary"
        added = (await writer.add(text, USER, infer=False)).results[0]
        assert text in await found(reader, f"{topic} diary")  # seen, so the delete below is what changes
        await writer.delete(added.id)
        assert text not in await found(reader, f"{topic} diary"), f"the other replica still finds deleted {topic!r}"
        assert text not in await found(writer, f"{topic} diary")


async def test_update_then_search_at_once_finds_the_new_text_only(writer: MemoryService, reader: MemoryService) -> None:
    added = (await writer.add("Favourite colour is green", USER, infer=False)).results[0]
    for colour in ("blue", "orange", "violet"):
        await writer.update(added.id, f"Favourite colour is {colour}")
        for svc in (reader, writer):
            texts = await found(svc, "favourite colour")
            assert texts == [f"Favourite colour is {colour}"], texts


async def test_writes_by_the_reader_are_seen_by_the_writer_too(writer: MemoryService, reader: MemoryService) -> None:
    """Both directions: the timestamp is the latest write by any process, whichever recorded it last."""
    first = (await writer.add("Lives in Lisbon", USER, infer=False)).results[0]
    await reader.delete(first.id)
    assert "Lives in Lisbon" not in await found(writer, "where does the user live")
    await reader.add("Lives in Porto", USER, infer=False)
    assert "Lives in Porto" in await found(writer, "where does the user live")


@pytest.mark.parametrize("consistency", ["eventually", "own writes only"])
async def test_without_the_recorded_timestamp_another_replica_reads_stale_results(
    shared: Settings, local_embedder, writer: MemoryService, consistency: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above can fail: a replica that does not wait for the recorded write (Eventually, or
    only its own writes' timestamp, as pymilvus's Session does) still finds a memory just deleted."""
    own_only = MilvusStore(shared.resolved_milvus_uri, shared.collection, shared.milvus_token, recorded_write=None)
    if consistency == "eventually":

        async def eventually(terms: Any = ()) -> dict[str, Any]:
            return {"consistency_level": "Eventually"}

        monkeypatch.setattr(own_only._clock, "search_args", eventually)
    stale = 0
    async with MemoryService(shared, embedder=local_embedder, vectors=own_only) as reader:
        await reader.ready()
        for topic in TOPICS[:3]:
            text = f"Owns a {topic} club card"
            added = (await writer.add(text, USER, infer=False)).results[0]
            await found(writer, f"{topic} club card")  # the row is searchable on the server from here on
            await writer.delete(added.id)
            stale += text in await found(reader, f"{topic} club card")
    assert stale > 0, "every search saw the delete: this check cannot tell read-your-writes apart"


async def test_the_history_keeps_the_largest_timestamp_noted_for_every_process(shared: Settings) -> None:
    first, second = make_history(shared), make_history(shared)
    await first.open()
    await second.open()
    try:
        assert await collection_ts(first) == 0  # nothing recorded yet
        mark = await first.change_mark()
        for noted, kept in [(470779826635276295, 470779826635276295), (5, 470779826635276295), (2**62, 2**62)]:
            await second.note_vector_ts(noted)  # by another process: the largest stays, whoever notes it
            assert await collection_ts(first) == kept
        if shared.history_url:  # PostgreSQL's change counter counts memory changes only (SQLite's counts any commit)
            assert await first.change_mark() == mark
    finally:
        await first.close()
        await second.close()


async def test_a_timestamp_that_could_not_be_recorded_is_recorded_at_the_next_write(
    writer: MemoryService, reader: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write itself succeeds; the writer still reads it; the next write records both."""
    recorded = writer.history.note_vector_ts

    async def failing(ts: int, terms: Any = None) -> None:
        raise StoreUnavailable("The history database failed: injected fault.")

    monkeypatch.setattr(writer.history, "note_vector_ts", failing)
    await writer.add("Speaks Basque", USER, infer=False)
    assert "Speaks Basque" in await found(writer, "which languages")
    assert await collection_ts(writer.history) < writer.vectors.write_ts
    monkeypatch.setattr(writer.history, "note_vector_ts", recorded)
    await writer.add("Speaks Welsh", USER, infer=False)
    assert await collection_ts(writer.history) == writer.vectors.write_ts
    assert {"Speaks Basque", "Speaks Welsh"} <= set(await found(reader, "which languages"))


async def test_the_history_keeps_the_largest_timestamp_per_scope_term(shared: Settings) -> None:
    history = make_history(shared)
    await history.open()
    try:
        await history.note_vector_ts(100, ["user_id=a"])
        await history.note_vector_ts(200, ["agent_id=x", "user_id=b"])
        await history.note_vector_ts(150, ["user_id=a"])
        terms = ["user_id=a", "user_id=b", "agent_id=x", "run_id=never-written"]
        assert await history.vector_ts_of(terms) == {"": 200, "user_id=a": 150, "user_id=b": 200, "agent_id=x": 200}
        await history.note_vector_ts(120)  # a write whose scopes are unknown
        assert await history.vector_ts_of(["user_id=a"]) == {"": 200, "*": 120, "user_id=a": 150}
        assert await collection_ts(history) == 200
    finally:
        await history.close()


async def test_a_search_waits_for_its_own_scopes_latest_write_not_another_users(
    writer: MemoryService, reader: MemoryService
) -> None:
    other = Scope(user_id="someone-else")
    await writer.add("Plays the cello", USER, infer=False)
    own = writer.vectors.write_ts
    await writer.add("Plays the oboe", other, infer=False)
    assert writer.vectors.write_ts > own
    clock = reader.vectors._clock  # type: ignore[attr-defined]
    waits = await clock.search_args(["user_id=ryw"])
    assert waits["guarantee_timestamp"] == own  # not the other user's later write
    assert (await clock.search_args(["user_id=someone-else"]))["guarantee_timestamp"] == writer.vectors.write_ts
    assert (await clock.search_args([]))["guarantee_timestamp"] == writer.vectors.write_ts  # no scope: every write
    assert "Plays the cello" in await found(reader, "which instrument")


async def test_a_scope_whose_timestamp_could_not_be_recorded_is_recorded_with_the_next_write_elsewhere(
    writer: MemoryService, reader: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next write, to another scope, records the earlier write's scope too: another replica
    searching the first scope still waits for it."""
    recorded = writer.history.note_vector_ts

    async def failing(ts: int, terms: Any = None) -> None:
        raise StoreUnavailable("The history database failed: injected fault.")

    monkeypatch.setattr(writer.history, "note_vector_ts", failing)
    await writer.add("Collects stamps", USER, infer=False)
    unrecorded = writer.vectors.write_ts
    monkeypatch.setattr(writer.history, "note_vector_ts", recorded)
    await writer.add("Collects coins", Scope(user_id="someone-else"), infer=False)
    noted = await writer.history.vector_ts_of(["user_id=ryw"])
    assert noted["user_id=ryw"] == writer.vectors.write_ts > unrecorded
    assert "Collects stamps" in await found(reader, "what does the user collect")


async def test_scope_terms_noted_long_ago_are_pruned_and_then_wait_for_the_collections_latest_write(
    shared: Settings,
) -> None:
    history = make_history(shared)
    await history.open()
    try:
        old = 1 << 40
        await history.note_vector_ts(old, ["run_id=finished"])
        now = old + PRUNE_AGE + 1
        await history.note_vector_ts(now - 5, ["user_id=recent"])
        history._notes = PRUNE_EVERY - 1  # type: ignore[attr-defined]  # the next note prunes
        await history.note_vector_ts(now, ["user_id=active"])
        noted = await history.vector_ts_of(["run_id=finished", "user_id=recent", "user_id=active"])
        assert noted == {"": now, "user_id=recent": now - 5, "user_id=active": now}
        assert WriteClock(None).wait_for(noted, ["run_id=finished"]) == now  # later than its own: still safe
        assert not [k for k in await history.store_state() if k.startswith("vector_ts")]  # reembed's keys only
    finally:
        await history.close()


async def collection_ts(history: HistoryStore) -> int:
    """The latest write's timestamp any process recorded for the collection (0: none)."""
    return (await history.vector_ts_of([])).get("", 0)
