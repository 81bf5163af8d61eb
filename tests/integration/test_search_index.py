"""The in-memory search index that answers scope-only searches on Milvus Lite.

It must rank as Milvus does (cosine; BM25 with collection-wide statistics), keep scopes apart,
follow every write, survive a restart (rebuilt from SQLite), and fill in embeddings for a history
database written before they were stored.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from milvus_memory_mcp import doctor, filters
from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.history.log import FIND_LIVE_BY_HASH
from milvus_memory_mcp.keywords import BM25_B, BM25_K1, analyse
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.search_index import Entry, SearchIndex
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.indexed import IndexedStore

from ..conftest import make_settings

pytestmark = pytest.mark.anyio

TEXTS = [
    "Likes to play tennis on weekends",
    "Plays tennis with Maria every Saturday morning",
    "Has a linear algebra midterm exam on November 20",
    "Order number ZX-4471 was shipped to Lisbon",
    "Prefers window seats on long flights and aisle seats on short flights",
    "Is allergic to peanuts and to tree nuts",
    "Went to a tennis tournament in Lisbon last spring",
    "Adopted a cat named Pixel in March",
]
QUERIES = ["tennis weekends", "Lisbon order", "what is she allergic to", "flights seats", "cat pixel", "exam"]


def entry(memory_id: str, scope: Scope, vector: list[float], text: str) -> Entry:
    return Entry(memory_id, scope, np.asarray(vector, dtype=np.float32), analyse(text))


def reference_bm25(docs: dict[str, str], query: str) -> dict[str, float]:
    """BM25 (the product's k1 and b) written out from its definition, over every document given."""
    words = {i: Counter(analyse(t).split()) for i, t in docs.items()}
    average = sum(sum(c.values()) for c in words.values()) / len(words)
    scores: dict[str, float] = {}
    for term, weight in Counter(analyse(query).split()).items():
        df = sum(1 for c in words.values() if term in c)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, c in words.items():
            if term in c:
                tf, length = c[term], sum(c.values())
                part = tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
                scores[i] = scores.get(i, 0.0) + weight * idf * part
    return scores


def test_bm25_uses_collection_wide_statistics_and_stays_in_scope() -> None:
    index = SearchIndex(2)
    docs = {f"m{i}": t for i, t in enumerate(TEXTS)}
    scopes = {i: Scope(user_id="alice" if n % 2 else "bob") for n, i in enumerate(docs)}
    index.upsert(entry(i, scopes[i], [1.0, 0.0], t) for i, t in docs.items())
    for query in QUERIES:
        expected = reference_bm25(docs, query)
        for user in ("alice", "bob"):
            hits = index.search_words(analyse(query), Scope(user_id=user), 10)
            mine = {i: s for i, s in expected.items() if scopes[i].user_id == user}
            assert [i for i, _ in hits] == sorted(mine, key=lambda i: (-mine[i], i))
            assert all(s == pytest.approx(mine[i]) for i, s in hits)


def test_dense_search_matches_brute_force_in_partial_and_full_scopes() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    index = SearchIndex(16)
    scope_of = [Scope(user_id="big" if i % 10 else "small", agent_id="a" if i % 3 else None) for i in range(600)]
    index.upsert(Entry(f"m{i}", scope_of[i], vectors[i], "") for i in range(600))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scopes = (Scope(user_id="big"), Scope(user_id="small"), Scope(user_id="big", agent_id="a"), Scope(agent_id="a"))
    for scope in scopes:
        query = rng.standard_normal(16).astype(np.float32)
        rows = [i for i in range(600) if all(getattr(scope_of[i], k) == v for k, v in scope.items())]
        sims = unit[rows] @ (query / np.linalg.norm(query))
        expected = [f"m{rows[j]}" for j in np.argsort(-sims)[:10]]
        hits = index.search(query.tolist(), scope, 10)
        assert [i for i, _ in hits] == expected
        assert hits[0][1] == pytest.approx(float(sims.max()), abs=1e-5)
    assert index.search([1.0] * 16, Scope(user_id="nobody"), 10) == []


def test_index_follows_updates_and_deletes_and_reuses_rows() -> None:
    index = SearchIndex(2)
    alice = Scope(user_id="alice")
    index.upsert([entry("a", alice, [1, 0], "tennis on weekends"), entry("b", alice, [0, 1], "chess club")])
    index.upsert([entry("a", alice, [0, 1], "painting classes")])  # an update: new text and vector
    assert index.search_words("tenni", alice, 5) == []
    assert [i for i, _ in index.search_words(analyse("painting"), alice, 5)] == ["a"]
    index.delete(["b", "unknown"])
    assert [i for i, _ in index.search([0, 1], alice, 5)] == ["a"]
    index.upsert([entry("c", alice, [1, 0], "chess club")])  # takes the freed row
    assert len(index) == 2 and [i for i, _ in index.search([1, 0], alice, 1)] == ["c"]


def test_an_index_built_in_bulk_answers_and_changes_like_one_built_by_upserts() -> None:
    rng = np.random.default_rng(3)
    scopes = [Scope(user_id="alice"), Scope(user_id="bob", run_id="r1"), Scope(agent_id="helper")]
    rows = [(f"m{i % 40}", scopes[i % 3], rng.standard_normal(8).tolist(), TEXTS[i % len(TEXTS)]) for i in range(45)]
    rows.append(("empty", scopes[0], [1.0] * 8, ""))  # no keyword at all
    one_by_one = SearchIndex(8)
    one_by_one.upsert(entry(*row) for row in rows)  # m0-m4 twice: the later row wins
    bulk = SearchIndex.build(8, (entry(*row) for row in rows))

    def answers(index: SearchIndex) -> list[object]:
        out: list[object] = [len(index)]
        for scope in [*scopes, Scope(user_id="bob"), Scope(user_id="nobody")]:
            out.append(index.search([1.0, 0.5, 0, 0, -1, 0, 0, 0.25], scope, 50))
            out.extend(index.search_words(analyse(q), scope, 50) for q in QUERIES)
        return out

    assert answers(bulk) == answers(one_by_one)
    for index in (bulk, one_by_one):  # then writes: new rows beyond the built ones, updates, deletes
        index.upsert(
            [entry("new", scopes[0], [0.0] * 7 + [1.0], "tennis exam"), entry("m1", scopes[2], [1.0] * 8, "cat")]
        )
        index.delete(["m2", "empty"])
    assert answers(bulk) == answers(one_by_one)
    assert len(SearchIndex.build(8, [])) == 0
    with pytest.raises(ValueError, match="4 dimensions"):  # as an upsert of them would refuse
        SearchIndex.build(8, [entry("x", scopes[0], [1.0] * 4, "")])


def test_scope_only_recognises_exact_scope_filters_only() -> None:
    alice = Scope(user_id="alice", run_id="r1")
    assert filters.scope_only(filters.within(alice, None)) == alice
    assert filters.scope_only(filters.within(alice, {"run_id": "r1"})) == alice
    assert filters.scope_only(filters.within(alice, {"user_id": "bob"})) is None  # contradiction: Milvus decides
    assert filters.scope_only(filters.within(alice, {"category": "x"})) is None
    assert filters.scope_only(filters.within(alice, {"user_id": {"ne": "bob"}})) is None


async def _ranked(svc: MemoryService, scope: Scope) -> dict[str, list[tuple[str, float]]]:
    out = {}
    for mode in ("dense", "keyword", "hybrid"):
        svc.settings = svc.settings.model_copy(update={"search_mode": mode})
        for query in QUERIES:
            hits = (await svc.search(query, scope, limit=5)).results
            # ties may come in either order: compare by score, then text
            out[f"{mode}:{query}"] = sorted(((h.memory, round(h.score, 4)) for h in hits), key=lambda h: (-h[1], h[0]))
    return out


async def test_index_ranks_like_milvus_lite(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    """Same memories, same queries: the index and Milvus Lite's own search give the same results.

    The memories go in with one call (one flush, one segment), where Lite's per-segment BM25
    statistics are the collection's."""
    alice = Scope(user_id="alice")
    results = []
    for indexed in (True, False):
        settings = make_settings(tmp_path / f"data-{indexed}", search_index=indexed)
        async with MemoryService(settings, embedder=local_embedder) as svc:
            await svc.ready()
            assert isinstance(svc.vectors, IndexedStore) == indexed
            await svc.add([{"role": "user", "content": t} for t in TEXTS], alice, infer=False)
            await svc.flush()
            results.append(await _ranked(svc, alice))
    assert results[0] == results[1]
    assert all(len(hits) > 0 for key, hits in results[0].items() if not key.startswith("keyword"))


async def test_index_is_rebuilt_at_start_and_serves_without_milvus_search(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data")
    alice, bob = Scope(user_id="alice"), Scope(user_id="bob")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        ids = [(await svc.add(t, alice, infer=False)).results[0].id for t in TEXTS]
        await svc.add("Plays tennis every day", bob, infer=False)
        await svc.update(ids[0], "Stopped playing tennis, now rows on weekends")
        await svc.delete(ids[1])
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert isinstance(svc.vectors, IndexedStore)

        async def no_milvus_search(*args: object) -> None:
            raise AssertionError("a scope-only search reached Milvus")

        monkeypatch.setattr(svc.vectors.inner, "search", no_milvus_search)
        monkeypatch.setattr(svc.vectors.inner, "search_keywords", no_milvus_search)
        found = [h.memory for h in (await svc.search("tennis", alice, limit=10)).results]
        assert "Plays tennis every day" not in found  # bob's
        assert TEXTS[1] not in found  # deleted
        assert "Stopped playing tennis, now rows on weekends" in found and TEXTS[0] not in found


async def test_embeddings_missing_from_an_older_history_database_are_filled_in_from_milvus(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    alice = Scope(user_id="alice")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        for t in TEXTS:
            await svc.add(t, alice, infer=False)
        before = (await svc.search("allergic to nuts", alice, limit=3)).results
    with sqlite3.connect(settings.resolved_history_path) as conn:
        conn.execute("DELETE FROM embeddings")  # as a database written before migration 0003
    async with MemoryService(settings, embedder=local_embedder) as svc:
        after = (await svc.search("allergic to nuts", alice, limit=3)).results
        assert [(h.id, round(h.score, 4)) for h in after] == [(h.id, round(h.score, 4)) for h in before]
    with sqlite3.connect(settings.resolved_history_path) as conn:
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == len(TEXTS)


async def test_filtered_searches_use_the_index_and_stay_in_scope(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = Scope(user_id="alice"), Scope(user_id="bob")
    await service.add("Likes tennis", alice, metadata={"category": "hobby"}, infer=False)
    await service.add("Likes tennis too", bob, metadata={"category": "hobby"}, infer=False)
    await service.add("Tennis elbow diagnosis", alice, metadata={"category": "health"}, infer=False)
    assert isinstance(service.vectors, IndexedStore)

    async def no_milvus_search(*args: object) -> None:
        raise AssertionError("a search reached Milvus")

    monkeypatch.setattr(service.vectors.inner, "search", no_milvus_search)
    monkeypatch.setattr(service.vectors.inner, "search_keywords", no_milvus_search)
    hits = (await service.search("tennis", alice, filters_={"category": "hobby"})).results
    assert [h.memory for h in hits] == ["Likes tennis"]
    widened = await service.search("tennis", alice, filters_={"OR": [{"user_id": "bob"}, {"category": "hobby"}]})
    assert [h.memory for h in widened.results] == ["Likes tennis"]  # a filter never widens the scope
    assert (await service.search("tennis", alice, filters_={"user_id": "bob"})).results == []


async def test_reads_are_served_before_milvus_opens_and_writes_open_it(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    alice = Scope(user_id="alice")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        kept = (await svc.add("Likes to play tennis on weekends", alice, infer=False)).results[0]
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert [h.id for h in (await svc.search("tennis", alice)).results] == [kept.id]
        assert (await svc.list(alice)).results[0].id == kept.id
        hits = await svc.search("tennis", alice, filters_={"category": {"ne": "x"}})  # SQLite selects the ids
        assert hits.results == []  # (no memory has a category)
        assert not svc.is_ready  # Milvus is not open yet: it opens in the background a moment later
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.search("tennis", alice)
        added = (await svc.add("Is allergic to peanuts", alice, infer=False)).results[0]  # a write opens Milvus
        assert svc.is_ready
        assert sorted(await svc.vectors.ids()) == sorted([kept.id, added.id])


class CountingEmbedder(LocalEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.documents = 0

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        if kind == "document":
            self.documents += len(texts)
        return await super().embed(texts, kind)


async def test_changes_re_applied_at_start_use_the_stored_embeddings(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    alice = Scope(user_id="alice")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.add([{"role": "user", "content": t} for t in TEXTS], alice, infer=False)
        await svc.history.mark_pending(await svc.history.live_ids())  # as if a crash had come before Milvus
    counting = CountingEmbedder()
    async with MemoryService(settings, embedder=counting) as svc:
        await svc.ready()
        assert await svc.history.pending_ids() == [] or svc.vectors.needs_flush
        assert counting.documents == 0
        assert (await doctor.check(svc)).clean


async def test_exact_duplicate_lookup_uses_the_hash_index(service: MemoryService) -> None:
    """The per-message duplicate check must not walk the whole scope (it did: 11 ms at 10k)."""
    await service.add("Likes tennis", Scope(user_id="alice"), infer=False)
    with sqlite3.connect(service.settings.resolved_history_path) as conn:
        conn.execute("ANALYZE")
        plan = conn.execute("EXPLAIN QUERY PLAN " + FIND_LIVE_BY_HASH, ("memories", "h", "alice", "", "")).fetchall()
    assert "USING INDEX memories_hash" in " ".join(str(step[-1]) for step in plan)


async def test_a_repeated_filtered_search_sees_every_write_in_between(service: MemoryService) -> None:
    alice = Scope(user_id="alice")
    hobby = {"category": "hobby"}

    async def found() -> list[str]:
        return sorted(h.memory for h in (await service.search("tennis", alice, filters_=hobby)).results)

    await service.add("Likes tennis", alice, metadata=hobby, infer=False)
    assert await found() == ["Likes tennis"]
    added = (await service.add("Watches tennis on TV", alice, metadata=hobby, infer=False)).results[0]
    assert await found() == ["Likes tennis", "Watches tennis on TV"]
    await service.update(added.id, "Watches tennis on TV", metadata={"category": "media"})
    assert await found() == ["Likes tennis"]
    await service.update(added.id, "Watches tennis on TV", metadata=hobby)
    assert await found() == ["Likes tennis", "Watches tennis on TV"]
    await service.delete(added.id)
    assert await found() == ["Likes tennis"]


async def test_writes_reach_milvus_at_the_flush_in_order_and_reads_never_wait_for_it(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    # No background flush during the test.
    settings = make_settings(tmp_path / "data").model_copy(update={"flush_delay": 60.0})
    alice = Scope(user_id="alice")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        store = svc.vectors
        assert isinstance(store, IndexedStore)
        added = (await svc.add("Plays the cello on Sundays", alice, infer=False)).results[0]
        await svc.update(added.id, "Plays the viola on Sundays")
        gone = (await svc.add("Owns a red bicycle", alice, infer=False)).results[0]
        await svc.delete(gone.id)
        # Served at once from SQLite and the index; Milvus Lite has not been written yet.
        hits = (await svc.search("viola", alice)).results
        assert [h.memory for h in hits] == ["Plays the viola on Sundays"]
        assert await store.inner.ids() == []
        assert sorted(await svc.history.pending_ids()) == sorted([added.id, gone.id])
        calls: list[str] = []
        for kind in ("upsert", "delete"):
            real = getattr(store.inner, kind)

            async def counted(items: Any, real: Any = real, kind: str = kind) -> None:
                calls.append(f"{kind} {len(items)}")
                await real(items)

            setattr(store.inner, kind, counted)
        await svc.flush()
        assert calls == ["upsert 2", "delete 1"]  # the three upserts in one call (the later row of `added`)
        assert [r.memory for r in await store.inner.get([added.id, gone.id])] == ["Plays the viola on Sundays"]
        assert await svc.history.pending_ids() == []
        assert (await doctor.check(svc)).clean
