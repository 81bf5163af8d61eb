"""Memories are dated when they were said, and a question that names a date finds what was said then.

A memory's created_at is when it was said: now, or the add's `at` for a conversation stored later
(an old chat imported, a benchmark's sessions). "What class did she take in May 2023?" shares no
word with "Took a pottery class" that tells it from "Took a painting class": only their dates do.
Searched also among the memories of the period the question names, the one said then comes first,
on Milvus Lite and on a Milvus server (a created_at filter in both).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import ENGINES

pytestmark = [pytest.mark.anyio, ENGINES]

SCOPE = Scope(user_id="maya")
MAY = "2023-05-08T13:56:00+00:00"
AUGUST = "2023-08-20T09:00:00+00:00"


async def add_classes(service: MemoryService) -> tuple[str, str]:
    """Two look-alike memories, said in May and in August 2023; their ids."""
    may = await service.add("Took a pottery class with her sister.", SCOPE, infer=False, at=MAY)
    august = await service.add("Took a painting class with her sister.", SCOPE, infer=False, at=AUGUST)
    return may.results[0].id, august.results[0].id


async def first_for(service: MemoryService, question: str) -> str:
    return (await service.search(question, SCOPE, limit=5)).results[0].id


async def test_an_add_dated_at_a_past_time_is_created_updated_and_recorded_then(service: MemoryService) -> None:
    messages = [{"role": "user", "content": "I'm taking a pottery class."}, {"role": "user", "content": "On Mondays."}]
    out = await service.add(messages, SCOPE, infer=False, at="2023-05-08T13:56:00Z")
    # dated a microsecond apart, in the order they were said
    for event, said in zip(out.results, [MAY, "2023-05-08T13:56:00.000001+00:00"], strict=True):
        item = await service.get(event.id)
        assert item.created_at == item.updated_at == said
        [added] = (await service.memory_history(event.id)).events
        assert added.event == "ADD" and added.updated_at == said
    listed = await service.list(SCOPE, {"created_at": {"lt": "2023-06-01"}})
    assert [m.memory for m in listed.results] == ["I'm taking a pottery class.", "On Mondays."]


async def test_a_dated_conversation_lists_in_the_order_it_was_said(service: MemoryService) -> None:
    said = [f"Message number {n}" for n in ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    await service.add([{"role": "user", "content": t} for t in said], SCOPE, infer=False, at=MAY)
    assert [m.memory for m in (await service.list(SCOPE)).results] == said
    first = await service.list(SCOPE, limit=3)
    rest = await service.list(SCOPE, limit=10, cursor=first.next_cursor)
    assert [m.memory for m in first.results + rest.results] == said
    assert [m.memory for m in (await service.list(SCOPE, as_of=AUGUST)).results] == said


async def test_a_question_naming_a_month_finds_what_was_said_that_month_first(service: MemoryService) -> None:
    may, august = await add_classes(service)
    assert await first_for(service, "What class did she take in May 2023?") == may
    assert await first_for(service, "What class did she take in August 2023?") == august
    assert await first_for(service, "which class did she take on 21 August, 2023") == august


async def test_a_question_naming_a_period_still_finds_memories_from_other_times(service: MemoryService) -> None:
    may, august = await add_classes(service)
    found = await service.search("What class did she take in May 2023?", SCOPE, limit=5)
    assert [h.id for h in found.results] == [may, august]
    nothing_then = await service.search("What class did she take in March 2021?", SCOPE, limit=5)
    assert {h.id for h in nothing_then.results} == {may, august}


async def test_a_question_about_yesterday_finds_what_was_said_yesterday_first(service: MemoryService) -> None:
    now = datetime.now(timezone.utc)
    for text, days in (("Said she would call the dentist.", 70), ("Said she would call the plumber.", 1)):
        await service.add(text, SCOPE, infer=False, at=(now - timedelta(days=days)).isoformat())
    found = await service.search("Who did she say she would call yesterday?", SCOPE, limit=5)
    assert [h.memory for h in found.results] == ["Said she would call the plumber.", "Said she would call the dentist."]
    found = await service.search("Who did she say she would call last month?", SCOPE, limit=5)
    assert found.results[0].memory == "Said she would call the plumber."  # last month and up to now


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2999-01-01T00:00:00Z", "at is in the future"),
        ("last Tuesday", "at must be an ISO-8601 time"),
        (20230508, "at must be an ISO-8601 time"),
    ],
)
async def test_an_add_dated_in_the_future_or_not_by_a_time_is_refused_and_stores_nothing(
    service: MemoryService, at: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await service.add("Took a pottery class.", SCOPE, infer=False, at=at)
    assert (await service.list(SCOPE)).results == []
