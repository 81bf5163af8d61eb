"""Without an LLM: an add whose closest memory in scope is above the threshold returns it (NONE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import make_settings

pytestmark = pytest.mark.anyio
ALICE = Scope(user_id="alice")


async def texts(service: MemoryService, scope: Scope = ALICE) -> list[str]:
    return [m.memory for m in (await service.list(scope)).results]


async def test_near_duplicate_returns_the_stored_memory_with_event_none(service: MemoryService) -> None:
    [first] = (await service.add("Likes to play tennis on weekends", ALICE)).results
    out = await service.add("Likes playing tennis on weekends", ALICE)
    [event] = out.results
    assert (event.event, event.id, event.memory) == ("NONE", first.id, "Likes to play tennis on weekends")
    assert event.reason and "similarity" in event.reason
    assert out.note and "infer=false" in out.note
    assert await texts(service) == ["Likes to play tennis on weekends"]
    assert [e.event for e in (await service.memory_history(first.id)).events] == ["ADD"]


async def test_infer_false_stores_a_near_duplicate_anyway(service: MemoryService) -> None:
    await service.add("Likes to play tennis on weekends", ALICE)
    out = await service.add("Likes playing tennis on weekends", ALICE, infer=False)
    assert [e.event for e in out.results] == ["ADD"] and out.note is None
    assert len(await texts(service)) == 2


async def test_different_facts_and_other_scopes_are_not_duplicates(service: MemoryService) -> None:
    await service.add("Likes to play tennis on weekends", ALICE)
    assert (await service.add("Plays squash every weekend", ALICE)).results[0].event == "ADD"
    assert (await service.add("Likes playing tennis on weekends", Scope(user_id="bob"))).results[0].event == "ADD"
    # MiniLM scores these 0.99, but the numbers differ: never a duplicate
    await service.add("Exam on 2025-11-20", ALICE)
    assert (await service.add("Exam on 2025-11-21", ALICE)).results[0].event == "ADD"
    # the same numbers in another order are other facts too
    await service.add("Process 0 remembers fact number 1", ALICE)
    assert (await service.add("Process 1 remembers fact number 0", ALICE)).results[0].event == "ADD"


async def test_near_duplicates_within_one_call_are_stored_once(service: MemoryService) -> None:
    out = await service.add(
        [
            {"role": "user", "content": "Is allergic to peanuts"},
            {"role": "user", "content": "Allergic to peanuts"},
        ],
        ALICE,
    )
    assert [e.event for e in out.results] == ["ADD", "NONE"]
    assert out.results[1].id == out.results[0].id
    assert await texts(service) == ["Is allergic to peanuts"]


async def test_threshold_one_turns_the_check_off(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    async with MemoryService(make_settings(tmp_path, dedup_threshold=1.0), embedder=local_embedder) as svc:
        await svc.add("Likes to play tennis on weekends", ALICE)
        assert (await svc.add("Likes playing tennis on weekends", ALICE)).results[0].event == "ADD"
