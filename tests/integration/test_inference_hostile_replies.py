"""Replies of the model no tool would accept (a lone surrogate, invisible text, an over-long fact)
and decisions that collide within one add: what is stored is what a tool would store, nothing the
user said is dropped without a note, and the history reads in the order things happened."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.service import MemoryService

from ..support.fake_openai import CHAT, FakeOpenAI
from .test_inference import ALICE, decisions, facts, history, live, llm_settings, seed

pytestmark = pytest.mark.anyio
INVISIBLE = "\u200b\ufeff\u0301"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=64).running() as f:
        yield f


@pytest.fixture
async def svc(tmp_path: Path, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryService]:
    async with MemoryService(llm_settings(tmp_path, fake, max_memory_bytes=64), embedder=local_embedder) as s:
        yield s


async def test_facts_no_tool_would_store_are_left_out_and_said(svc: MemoryService, fake: FakeOpenAI) -> None:
    fake.script(CHAT, facts("Likes \ud800 chess", INVISIBLE, "x" * 65, "Allergic to penicillin"))
    out = await svc.add("I like chess. I'm allergic to penicillin.", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "Allergic to penicillin")]
    assert out.note and "3 fact(s) of the LLM were empty, unreadable or over 64 bytes" in out.note, out.note
    assert await live(svc) == ["Allergic to penicillin"]


async def test_only_unusable_facts_store_the_input_verbatim(svc: MemoryService, fake: FakeOpenAI) -> None:
    fake.script(CHAT, facts("Likes \ud800 chess", INVISIBLE))
    out = await svc.add("I like chess.", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "I like chess.")]
    assert out.note and "Inference failed" in out.note and "unreadable" in out.note


async def test_an_unusable_decision_text_or_reason_falls_back_to_the_fact(svc: MemoryService, fake: FakeOpenAI) -> None:
    coffee = await seed(svc, "Likes coffee")
    fake.script(
        CHAT,
        facts("Likes coffee with oat milk"),
        decisions({"fact": 0, "event": "UPDATE", "id": "0", "text": INVISIBLE, "reason": "bad \ud800 reason"}),
    )
    out = await svc.add("I take my coffee with oat milk", ALICE)
    assert [(e.event, e.memory, e.reason) for e in out.results] == [
        ("UPDATE", "Likes coffee with oat milk", "UPDATE decided by the LLM.")
    ]
    assert await live(svc) == ["Likes coffee with oat milk"]
    assert [h[0] for h in await history(svc, coffee)] == ["ADD", "UPDATE"]


async def test_a_fact_known_as_a_memory_this_add_deletes_is_stored_anew(svc: MemoryService, fake: FakeOpenAI) -> None:
    job = await seed(svc, "Works at Initech")
    fake.script(
        CHAT,
        facts("Left Initech", "Works at Globex"),
        decisions(
            {"fact": 0, "event": "DELETE", "id": "0", "reason": "Left."},
            {"fact": 1, "event": "NONE", "id": "0", "reason": "Same job."},
        ),
    )
    out = await svc.add("I left Initech, I work at Globex now", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("DELETE", "Works at Initech"), ("ADD", "Works at Globex")]
    assert out.note and f"a NONE of memory {job}, which is gone, was stored as a new memory" in out.note, out.note
    assert await live(svc) == ["Works at Globex"]


async def test_none_then_update_of_one_memory_reads_in_order(svc: MemoryService, fake: FakeOpenAI) -> None:
    coffee = await seed(svc, "Likes coffee")
    fake.script(
        CHAT,
        facts("Likes coffee", "Likes coffee and tea"),
        decisions(
            {"fact": 0, "event": "NONE", "id": "0", "reason": "Known."},
            {"fact": 1, "event": "UPDATE", "id": "0", "text": "Likes coffee and tea", "reason": "Tea too."},
        ),
    )
    out = await svc.add("I like coffee, and tea too", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("NONE", "Likes coffee"), ("UPDATE", "Likes coffee and tea")]
    assert [(h[0], h[1], h[2]) for h in await history(svc, coffee)] == [
        ("ADD", None, "Likes coffee"),
        ("NONE", "Likes coffee", "Likes coffee"),
        ("UPDATE", "Likes coffee", "Likes coffee and tea"),
    ]


async def test_update_then_none_of_one_memory_reports_the_updated_text(svc: MemoryService, fake: FakeOpenAI) -> None:
    coffee = await seed(svc, "Likes coffee")
    fake.script(
        CHAT,
        facts("Likes coffee and tea", "Likes coffee"),
        decisions(
            {"fact": 0, "event": "UPDATE", "id": "0", "text": "Likes coffee and tea", "reason": "Tea too."},
            {"fact": 1, "event": "NONE", "id": "0", "reason": "Known."},
        ),
    )
    out = await svc.add("I like coffee and tea; coffee, as you know", ALICE)
    assert [(e.id, e.event, e.memory) for e in out.results] == [
        (coffee, "UPDATE", "Likes coffee and tea"),
        (coffee, "NONE", "Likes coffee and tea"),
    ]
    assert [h[0] for h in await history(svc, coffee)] == ["ADD", "UPDATE"]
    assert await live(svc) == ["Likes coffee and tea"]
