"""Whatever the LLM answers, `add_memory` keeps what the user said.

Malformed replies (wrong shapes, JSON nested too deep) store the input verbatim with a note; a
decision that cannot be applied leaves its fact to be added; more decisions than facts are cut.
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
