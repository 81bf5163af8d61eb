"""Whatever the LLM answers, `add_memory` keeps what the user said.

Malformed replies (wrong shapes, JSON nested too deep) store the input verbatim with a note; a
decision that cannot be applied leaves its fact to be added; more decisions than facts are cut.
Texts no tool would store (a lone surrogate, invisible, over the limit) are left out with a note,
and decisions that collide within one add keep every fact and a history in the order things
happened.
The model is the real HTTP fake of tests/fake_openai.py, behind the real `openai` client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..support.fake_openai import CHAT, FakeOpenAI, Reply, completion
from .test_inference import decisions, facts, history, live, llm_settings, seed

pytestmark = pytest.mark.anyio
ALICE = Scope(user_id="alice")
DEEP = 200_000
INVISIBLE = "\u200b\ufeff\u0301"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=64).running() as f:
        yield f


@pytest.fixture
async def svc(tmp_path: Path, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryService]:
    async with MemoryService(llm_settings(tmp_path, fake), embedder=local_embedder) as s:
        yield s


def body_with(**choice: Any) -> dict[str, Any]:
    body = completion("{}")
    body["choices"][0].update(choice)
    return body


def raw(text: str) -> Reply:
    return Reply(200, text.encode())


MALFORMED = [
    (Reply(200, body_with(message=None)), "message"),
    (Reply(200, body_with(message={"role": "assistant", "content": 42})), "not text"),
    (Reply(200, body_with(message={"role": "assistant", "content": ["facts"]})), "not text"),
    (Reply(200, body_with(message={"role": "assistant", "content": {"facts": ["x"]}})), "not text"),
    (Reply(200, {**completion("{}"), "choices": {"0": "x"}}), "choices"),
    (Reply(200, {**completion("{}"), "choices": ["x"]}), "message"),
    (Reply(200, {**completion("{}"), "choices": "x"}), "choices"),
    (Reply(200, {**completion("{}"), "choices": None}), "no answer"),
    (raw('{"id": "x", "choices": ' + "[" * DEEP + "]" * DEEP + "}"), "malformed"),
    (Reply(200, completion('{"facts": ' + "[" * DEEP + "]" * DEEP + "}")), "nested too deeply"),
    (Reply(200, completion('{"facts": ["a", ' + '{"x": ' * DEEP + "1" + "}" * DEEP + "]}")), "nested too deeply"),
    (raw("not json at all"), "malformed"),
]


@pytest.mark.parametrize(("reply", "why"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
async def test_malformed_extraction_reply_stores_the_input_verbatim_with_a_note(
    svc: MemoryService, fake: FakeOpenAI, reply: Reply, why: str
) -> None:
    fake.script(CHAT, reply, reply)
    said = "I adopted a dog named Rex"
    out = await svc.add(said, ALICE)
    [event] = out.results
    assert (event.event, event.memory) == ("ADD", said)
    assert out.note and "Inference failed" in out.note and why in out.note, out.note
    assert await live(svc) == [said]


@pytest.mark.parametrize(("reply", "why"), MALFORMED[:4] + MALFORMED[8:10], ids=[f"case{i}" for i in range(6)])
async def test_malformed_decision_reply_stores_the_input_verbatim_with_a_note(
    svc: MemoryService, fake: FakeOpenAI, reply: Reply, why: str
) -> None:
    await seed(svc, "Has a cat named Tom")
    fake.script(CHAT, facts("Adopted a dog named Rex"), reply, reply)
    said = "I adopted a dog named Rex"
    out = await svc.add(said, ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", said)]
    assert out.note and "Inference failed" in out.note and why in out.note, out.note
    assert await live(svc) == ["Has a cat named Tom", said]


@pytest.mark.parametrize("event", ["NONE", "DELETE"])
async def test_a_decision_on_an_unknown_id_leaves_its_fact_to_be_added(
    svc: MemoryService, fake: FakeOpenAI, event: str
) -> None:
    cat = await seed(svc, "Has a cat named Tom")
    fake.script(
        CHAT,
        facts("Adopted a dog named Rex"),
        decisions({"fact": 0, "event": event, "id": "3", "reason": "Already known."}),
    )
    out = await svc.add("I adopted a dog named Rex", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "Adopted a dog named Rex")]
    assert out.note and f"ignored a {event} of unknown memory id '3'" in out.note
    assert await live(svc) == ["Has a cat named Tom", "Adopted a dog named Rex"]
    assert await history(svc, cat) == [("ADD", None, "Has a cat named Tom", None)]


async def test_a_decision_for_a_fact_that_does_not_exist_is_ignored(svc: MemoryService, fake: FakeOpenAI) -> None:
    await seed(svc, "Has a cat named Tom")
    fake.script(
        CHAT,
        facts("Adopted a dog named Rex"),
        decisions({"fact": 7, "event": "ADD", "text": "Something invented", "reason": "?"}),
    )
    out = await svc.add("I adopted a dog named Rex", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "Adopted a dog named Rex")]
    assert out.note and "1 more decision(s) than facts were ignored" in out.note


async def test_decisions_are_capped_to_one_per_fact(svc: MemoryService, fake: FakeOpenAI) -> None:
    await seed(svc, "Plays chess on Sundays")
    flood = [{"fact": 0, "event": "ADD", "text": f"Likes chess variant {i}", "reason": "spam"} for i in range(2000)]
    fake.script(CHAT, facts("Likes chess"), decisions(*flood))
    out = await svc.add("I like chess", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "Likes chess variant 0")]
    assert out.note and "1999 more decision(s) than facts were ignored" in out.note, out.note
    assert await live(svc) == ["Plays chess on Sundays", "Likes chess variant 0"]


async def test_extra_decisions_without_a_fact_index_are_capped_too(svc: MemoryService, fake: FakeOpenAI) -> None:
    await seed(svc, "Plays chess on Sundays")
    flood = [{"fact": None, "event": "ADD", "text": f"Spam {i}", "reason": "spam"} for i in range(50)]
    fake.script(
        CHAT,
        facts("Likes chess", "Likes go"),
        decisions({"fact": 0, "event": "ADD", "text": "Likes chess", "reason": "new"}, *flood),
    )
    out = await svc.add("I like chess and go", ALICE)
    assert sorted(e.memory for e in out.results) == ["Likes chess", "Likes go"]
    assert out.note and "50 more decision(s) than facts were ignored" in out.note, out.note
    assert json.dumps(await live(svc)).count("Spam") == 0


async def test_facts_no_tool_would_store_are_left_out_and_said(svc: MemoryService, fake: FakeOpenAI) -> None:
    fake.script(CHAT, facts("Likes \ud800 chess", INVISIBLE, "x" * 8193, "Allergic to penicillin"))
    out = await svc.add("I like chess. I'm allergic to penicillin.", ALICE)
    assert [(e.event, e.memory) for e in out.results] == [("ADD", "Allergic to penicillin")]
    assert out.note and "3 fact(s) of the LLM were empty, unreadable or over 8192 bytes" in out.note, out.note
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


NONE = {"event": "NONE", "id": "0", "reason": "Known."}
UPDATE = {"event": "UPDATE", "id": "0", "text": "Likes coffee and tea", "reason": "Tea too."}


@pytest.mark.parametrize(
    ("first", "results", "events"),
    [
        # NONE first: it was decided on the memory as it stood, so its row comes before the UPDATE's
        (NONE, [("NONE", "Likes coffee"), ("UPDATE", "Likes coffee and tea")], ["ADD", "NONE", "UPDATE"]),
        # UPDATE first: the NONE's fact is in the updated text, which it reports (no row of its own)
        (UPDATE, [("UPDATE", "Likes coffee and tea"), ("NONE", "Likes coffee and tea")], ["ADD", "UPDATE"]),
    ],
    ids=["none-then-update", "update-then-none"],
)
async def test_a_none_and_an_update_of_one_memory_read_in_order(
    svc: MemoryService,
    fake: FakeOpenAI,
    first: dict[str, str],
    results: list[tuple[str, str]],
    events: list[str],
) -> None:
    coffee = await seed(svc, "Likes coffee")
    second = UPDATE if first is NONE else NONE
    told = facts("Likes coffee", "Likes coffee and tea")
    fake.script(CHAT, told, decisions(first | {"fact": 0}, second | {"fact": 1}))
    out = await svc.add("I like coffee, and tea too", ALICE)
    assert [(e.id, e.event, e.memory) for e in out.results] == [(coffee, *r) for r in results]
    assert [h[0] for h in await history(svc, coffee)] == events
    none = next(h for h in await history(svc, coffee) if h[0] == "NONE") if "NONE" in events else None
    assert none is None or none[1:3] == ("Likes coffee", "Likes coffee")
    assert await live(svc) == ["Likes coffee and tea"]
