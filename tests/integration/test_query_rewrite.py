"""MEMORY_QUERY_REWRITE: with an LLM, search_memories also searches the LLM's rewrites of the query.

The LLM is the fake OpenAI server on 127.0.0.1 (tests/support/fake_openai.py) with scripted
rewrites; the embedder is the real local model, so the ranking is the product's own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import make_settings
from ..support.fake_openai import CHAT, FakeOpenAI, Reply, chat_input, completion

pytestmark = pytest.mark.anyio

ALICE = Scope(user_id="alice")
BOB = Scope(user_id="bob")
MEMORIES = [
    "Hurt her left knee skiing last winter",
    "Has a workout plan: running three times a week",
    "Wants a workout plan for the summer",
    "Prefers morning workouts",
    "Works as a nurse at St Mary's hospital",
    "Likes to consider all options before deciding",
    "Plays tennis on Sundays",
]
QUESTION = "Any injuries to consider for a workout plan?"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=64).running() as f:
        yield f


def rewrite_settings(tmp_path: Path, fake: FakeOpenAI, **extra: Any) -> Settings:
    values: dict[str, Any] = {"query_rewrite": True, "llm_timeout": 5.0, "llm_max_retries": 0, **extra}
    return make_settings(
        tmp_path / "data", llm="openai:fake-llm", llm_base_url=fake.base_url, llm_api_key="sk-llm", **values
    )


async def open_with(settings: Settings, embedder: LocalEmbedder) -> MemoryService:
    svc = MemoryService(settings, embedder=embedder)
    await svc.__aenter__()
    for text in MEMORIES:
        await svc.add(text, ALICE, infer=False)
    return svc


@pytest.fixture
async def svc(tmp_path: Path, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryService]:
    s = await open_with(rewrite_settings(tmp_path, fake), local_embedder)
    try:
        yield s
    finally:
        await s.__aexit__(None, None, None)


def rewrites(*queries: str, delay: float = 0.0) -> Reply:
    return Reply(200, completion({"queries": list(queries)}), delay=delay)


async def top(svc: MemoryService, query: str, scope: Scope = ALICE, limit: int = 3) -> list[str]:
    return [h.memory for h in (await svc.search(query, scope, limit=limit)).results]


def record_embed_calls(embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of each `embed` call from here on (the calls still reach the model)."""
    batches: list[list[str]] = []
    embed = embedder.embed

    async def spy(texts: list[str], kind: Any = "document") -> list[list[float]]:
        batches.append(list(texts))
        return await embed(texts, kind)

    monkeypatch.setattr(embedder, "embed", spy)
    return batches


async def test_a_rewrite_finds_the_memory_the_plain_question_misses(
    tmp_path: Path, svc: MemoryService, fake: FakeOpenAI, local_embedder: LocalEmbedder
) -> None:
    fake.script(CHAT, rewrites("Has a knee injury", "Recovering from a sports injury"))
    assert (await top(svc, QUESTION, limit=1)) == [MEMORIES[0]]
    plain = MemoryService(make_settings(tmp_path / "plain"), embedder=local_embedder)
    async with plain:
        for text in MEMORIES:
            await plain.add(text, ALICE, infer=False)
        assert MEMORIES[0] not in await top(plain, QUESTION)  # the same search without the rewrite


async def test_the_query_and_its_rewrites_are_embedded_in_one_call_with_the_same_ranking(
    svc: MemoryService, fake: FakeOpenAI, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script(CHAT, rewrites("Has a knee injury", "Recovering from a sports injury"))
    batches = record_embed_calls(local_embedder, monkeypatch)
    ranked = await top(svc, QUESTION)
    assert [len(b) for b in batches] == [6]  # the query and both rewrites (content words, as asked), once
    monkeypatch.undo()
    one_by_one = [(await local_embedder.embed([t], "query"))[0] for t in batches[0]]
    batched = await local_embedder.embed(batches[0], "query")
    assert np.allclose(one_by_one, batched, atol=1e-4)  # batching changes no vector
    assert ranked[0] == MEMORIES[0]


async def test_a_keyword_search_with_rewrites_embeds_nothing(
    svc: MemoryService, fake: FakeOpenAI, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script(CHAT, rewrites("Has a knee injury"))
    svc.settings = svc.settings.model_copy(update={"search_mode": "keyword"})
    batches = record_embed_calls(local_embedder, monkeypatch)
    assert MEMORIES[0] in await top(svc, QUESTION)  # found by the rewrite's "knee" alone
    assert batches == [] and len(fake.calls(CHAT)) == 1


async def test_the_llm_is_sent_the_query_alone_as_data_never_memories_or_scope(
    svc: MemoryService, fake: FakeOpenAI
) -> None:
    fake.script(CHAT, rewrites("Has a knee injury"))
    await top(svc, QUESTION)
    [body] = fake.calls(CHAT)
    sent = chat_input(body)
    assert set(sent) == {"today", "query"} and sent["query"] == QUESTION
    sent_text = json.dumps(body)
    assert '"alice"' not in sent_text and "St Mary" not in sent_text and "skiing" not in sent_text


async def test_each_query_is_rewritten_once_then_served_from_the_cache(svc: MemoryService, fake: FakeOpenAI) -> None:
    fake.script(CHAT, rewrites("Has a knee injury"))
    first = await top(svc, QUESTION)
    assert await top(svc, "  " + QUESTION) == first  # same words, same rewrite
    assert len(fake.calls(CHAT)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"error": {"message": "boom", "type": "server_error"}}),
        Reply(200, completion("not json at all")),
        Reply(200, completion({"wrong": "shape"})),
    ],
    ids=["server-error", "not-json", "wrong-shape"],
)
async def test_a_failed_rewrite_falls_back_to_the_plain_search_and_logs_why(
    svc: MemoryService, fake: FakeOpenAI, reply: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(CHAT, reply)
    with caplog.at_level(logging.WARNING):
        found = await top(svc, "Where does she work?")
    assert found and found[0] == MEMORIES[4]
    assert "query rewrite failed" in caplog.text


async def test_a_slow_llm_costs_at_most_the_rewrite_timeout(
    tmp_path: Path, fake: FakeOpenAI, local_embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    svc = await open_with(rewrite_settings(tmp_path, fake, query_rewrite_timeout=0.5), local_embedder)
    try:
        fake.script(CHAT, rewrites("Has a knee injury", delay=3.0))
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            found = await top(svc, "Where does she work?")
        assert time.perf_counter() - started < 2.5
        assert found[0] == MEMORIES[4] and "query rewrite took over" in caplog.text
    finally:
        await svc.__aexit__(None, None, None)


async def test_rewrites_never_reach_another_users_memories(svc: MemoryService, fake: FakeOpenAI) -> None:
    await svc.add("Broke his wrist playing rugby", BOB, infer=False)
    fake.script(CHAT, rewrites("Broke his wrist playing rugby"))
    assert "Broke his wrist playing rugby" not in await top(svc, QUESTION, limit=10)


async def test_rewriting_is_off_unless_asked_for_even_with_an_llm(
    tmp_path: Path, fake: FakeOpenAI, local_embedder: LocalEmbedder
) -> None:
    svc = await open_with(rewrite_settings(tmp_path, fake, query_rewrite=False), local_embedder)
    try:
        await top(svc, QUESTION)
        assert fake.calls(CHAT) == []
    finally:
        await svc.__aexit__(None, None, None)


def test_rewriting_without_an_llm_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="MEMORY_QUERY_REWRITE needs an LLM: set MEMORY_LLM"):
        Settings.load({"MEMORY_QUERY_REWRITE": "true"})


async def test_rewrites_no_search_would_take_are_dropped(
    svc: MemoryService, fake: FakeOpenAI, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script(CHAT, rewrites("\u200b\ufeff", "knee \ud800 injury", "nul\x00here", "Has a knee injury"))
    batches = record_embed_calls(local_embedder, monkeypatch)
    assert (await top(svc, QUESTION, limit=1)) == [MEMORIES[0]]
    assert [len(b) for b in batches] == [4]  # the query and the one usable rewrite (content words, as asked)
    assert not any("\u200b" in t or "\x00" in t for t in batches[0])
