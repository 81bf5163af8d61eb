"""Hybrid search: Milvus BM25 full-text search fused with dense similarity, on real Milvus Lite."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from mcp import Client
from pymilvus import MilvusClient

from milvus_memory_mcp.core.query import content_query, query_words
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.keywords import BM25_B, BM25_K1
from milvus_memory_mcp.ranking import fact_cover
from milvus_memory_mcp.records import CONTEXT_KEY, MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.capabilities import Capabilities
from milvus_memory_mcp.stores.milvus import MilvusStore
from milvus_memory_mcp.stores.milvus_schema import search_indexes

from ..conftest import ENGINES, call, make_settings

pytestmark = pytest.mark.anyio

FACTS = [
    "Likes to play tennis on weekends",
    "Has a linear algebra midterm exam on November 20",
    "Order number ZX-4471 was shipped to Lisbon",
    "Prefers window seats on long flights",
    "Is allergic to peanuts",
]


async def test_keyword_search_stems_and_finds_rare_tokens(service: MemoryService) -> None:
    for fact in FACTS:
        await service.add(fact, Scope(user_id="u"), infer=False)
    assert service.vectors.keyword_search
    scope = Scope(user_id="u")
    service.settings = service.settings.model_copy(update={"search_mode": "keyword"})
    stemmed = await service.search("weekend plans", scope)
    assert [h.memory for h in stemmed.results] == [FACTS[0]]  # "weekend" matches "weekends"
    assert 0 < stemmed.results[0].score <= 1
    assert (await service.search("the and of", scope)).results == []  # only stop words: nothing to match
    service.settings = service.settings.model_copy(update={"search_mode": "hybrid"})
    fused = await service.search("zx-4471", scope, limit=5)
    assert fused.results[0].memory == FACTS[2]
    scores = [h.score for h in fused.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


async def test_threshold_drops_low_hybrid_scores(client: Client) -> None:
    for fact in FACTS:
        await call(client, "add_memory", messages=fact, user_id="u")
    everything = (await call(client, "search_memories", query="tennis on weekends", user_id="u"))["results"]
    assert everything[0]["memory"] == FACTS[0] and len(everything) == len(FACTS)
    cut = (everything[0]["score"] + everything[1]["score"]) / 2
    strict = (await call(client, "search_memories", query="tennis on weekends", user_id="u", threshold=cut))["results"]
    assert [h["memory"] for h in strict] == [FACTS[0]]
    unrelated = await call(client, "search_memories", query="quantum chromodynamics", user_id="u", threshold=0.5)
    assert unrelated["results"] == []  # scores carry the best match's similarity, not just the rank


async def test_recency_weight_favours_newer_memories(service: MemoryService) -> None:
    old = (await service.add("Favourite colour is blue", Scope(user_id="u"), infer=False)).results[0]
    new = (await service.add("Favourite colour is green", Scope(user_id="u"), infer=False)).results[0]
    # Make the first memory a year old, as its stores would hold it.
    record = await service.history.get(old.id)
    assert record is not None
    aged = record.updated(
        created_at=record.created_at - 365 * 86_400_000_000, updated_at=record.updated_at - 365 * 86_400_000_000
    )
    [vector] = await service.embedder.embed([aged.memory])
    await service.history._run(lambda c: service.history._put_record(c, aged))
    await service.vectors.upsert([(aged, vector)])
    await service.vectors.flush()
    query = "What is the favourite colour? blue"
    assert (await service.search(query, Scope(user_id="u"))).results[0].id == old.id
    service.settings = service.settings.model_copy(update={"recency_weight": 0.6, "recency_half_life_days": 30})
    ranked = (await service.search(query, Scope(user_id="u"))).results
    assert ranked[0].id == new.id


class NoBM25Store(MilvusStore):
    """Real Milvus Lite that reports no BM25 functions, as a Milvus 2.3 server would."""

    def _connect(self) -> None:
        super()._connect()
        self.capabilities = dataclasses.replace(self.capabilities, bm25=False)


async def test_engine_without_bm25_scores_the_dense_candidates_by_keywords(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """A Milvus without BM25 keeps hybrid search: the product scores the dense pool with BM25. With
    one small scope the pool is the whole collection, so the scores equal Lite's own BM25's."""
    queries = ["zx-4471", "tennis", "weekend plans", "which seat on a plane", "nut allergy", "exam date"]
    ranked: dict[str, list[list[tuple[str, float]]]] = {}
    for name, make in (("bm25", None), ("none", NoBM25Store)):
        settings = make_settings(tmp_path / name)
        store = make(settings.resolved_milvus_uri, settings.collection) if make else None
        async with MemoryService(settings, embedder=local_embedder, vectors=store) as svc:
            for fact in FACTS:
                await svc.add(fact, Scope(user_id="u"), infer=False)
            await svc.ready()
            assert svc.vectors.keyword_search == (make is None)
            ranked[name] = [
                [(h.memory, h.score) for h in (await svc.search(q, Scope(user_id="u"))).results] for q in queries
            ]
            svc.settings = svc.settings.model_copy(update={"search_mode": "keyword"})
            keyword = (await svc.search("weekend plans", Scope(user_id="u"))).results
            assert [(h.memory, h.score) for h in keyword] == [(FACTS[0], 1.0)]  # stemmed, on both engines
    for with_bm25, without in zip(ranked["bm25"], ranked["none"], strict=True):
        assert [m for m, _ in without] == [m for m, _ in with_bm25]
        assert [s for _, s in without] == pytest.approx([s for _, s in with_bm25], abs=1e-6)
    assert ranked["none"][0][0] == (FACTS[2], 1.0)


async def test_collection_without_keyword_field_is_rebuilt_from_history(
    tmp_path: Path, local_embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    old_store = NoBM25Store(settings.resolved_milvus_uri, settings.collection)
    async with MemoryService(settings, embedder=local_embedder, vectors=old_store) as svc:
        ids = [(await svc.add(f, Scope(user_id="u"), {"n": i}, infer=False)).results[0].id for i, f in enumerate(FACTS)]
        await svc.delete(ids[1])

    caplog.set_level(logging.WARNING, logger="milvus_memory_mcp.core.lifecycle")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert "predates keyword search: rebuilding it from the history database (4 memories)" in caplog.text
        assert svc.vectors.keyword_search and not svc.vectors.stale_schema
        assert await svc.history.pending_ids() == []
        assert sorted(await svc.vectors.ids()) == sorted(i for i in ids if i != ids[1])
        svc.settings = svc.settings.model_copy(update={"search_mode": "keyword"})
        hits = (await svc.search("zx-4471", Scope(user_id="u"))).results
        assert [(h.id, h.metadata) for h in hits] == [(ids[2], {"n": 2})]
        assert [e.event for e in (await svc.memory_history(ids[1])).events] == ["ADD", "DELETE"]


async def test_rebuild_interrupted_after_the_drop_is_finished_at_the_next_start(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        ids = [(await svc.add(f, Scope(user_id="u"), infer=False)).results[0].id for f in FACTS]
        await svc.flush()  # a rebuild starts at start-up, when no write awaits its flush
        # The rebuild's first two steps, then a "crash" before the collection is refilled.
        await svc.history.mark_pending(await svc.history.live_ids())
        await svc.vectors.recreate(svc.embedder.model_id, svc.embedder.dimensions)
        assert await svc.vectors.ids() == []
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert sorted(await svc.vectors.ids()) == sorted(ids)
        assert (await svc.search("peanut allergy", Scope(user_id="u"))).results[0].memory == FACTS[4]


def test_a_milvus_bm25_index_scores_with_the_products_k1_and_b() -> None:
    """A Milvus 2.5+ server scores BM25 with its index's k1 and b (its defaults: 1.2 and 0.75): the
    index is built with the ones the in-process index and the server-side evidence use."""
    server_25 = {
        p.field_name: p.to_dict() for p in search_indexes(MilvusClient, Capabilities.detect("http://m:19530", "v2.5.4"))
    }
    assert server_25["sparse"]["metric_type"] == "BM25"
    assert (server_25["sparse"]["bm25_k1"], server_25["sparse"]["bm25_b"]) == (BM25_K1, BM25_B)
    assert 0 <= BM25_K1 <= 3 and 0 <= BM25_B <= 1  # the ranges Milvus accepts
    server_23 = [p.field_name for p in search_indexes(MilvusClient, Capabilities.detect("http://m:19530", "v2.3.5"))]
    assert server_23 == ["vector"]  # no BM25 there: the product scores the dense pool itself


# Facts about one person, each stored alone; each question shares one word of several with a fact
# that does not answer it ("call" / "calls", "prefer" / "prefers"), none with the fact that does.
MAYA = [
    "Wants to run a half marathon next year.",
    "Hates flying; takes the train whenever possible.",
    "Goes running three evenings a week.",
    "Prefers texts over phone calls.",
    "Prefers meetings after 10am; she is not a morning person.",
    "Works as a pediatric nurse at Riverside Children's Hospital.",
    "Lives in Portland, Oregon, with her partner Sam.",
]
ONE_WORD_SHARED = {
    "Can I schedule a call with her at 8am?": MAYA[4],
    "How does Maya prefer to travel long distances?": MAYA[1],
}


@ENGINES
@pytest.mark.parametrize("as_of", [None, "2999-01-01T00:00:00Z"])
async def test_a_fact_sharing_one_word_of_a_question_does_not_outrank_the_fact_that_answers_it(
    service: MemoryService, as_of: str | None
) -> None:
    """Current and `as_of` searches alike (`ranking.fact_cover`)."""
    for fact in MAYA:
        await service.add(fact, Scope(user_id="maya"), infer=False)

    async def first(question: str) -> str:
        return (await service.search(question, Scope(user_id="maya"), as_of=as_of)).results[0].memory

    for question, answer in ONE_WORD_SHARED.items():
        assert await first(question) == answer, question
    # a fact holding all of a question's words is still found by them
    assert await first("half marathon") == MAYA[0]
    assert await first("phone calls") == MAYA[3]


def test_fact_cover_is_the_largest_share_of_the_question_a_fact_stored_alone_holds() -> None:
    train, race = MemoryRecord.new(MAYA[1], None, Scope()), MemoryRecord.new(MAYA[0], None, Scope())
    said = MemoryRecord.new("Sure, the train.", {CONTEXT_KEY: "Training for a race?"}, Scope())
    words = query_words(content_query("is maya training for a race", frozenset({"maya"})))
    assert words == {"train", "race"}
    assert fact_cover([(train, 3.0)], words) == 0.5
    assert fact_cover([(train, 3.0), (race, 1.0)], words) == 0.5  # "marathon" is not "race"
    assert fact_cover([(said, 3.0)], words) == 1.0  # a memory with a context keeps its full weight
    assert fact_cover([(train, 3.0)], frozenset()) == 1.0
    assert fact_cover([], words) == 1.0
