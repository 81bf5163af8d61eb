"""`search_memories`: candidates from the dense and keyword searches, fused and ranked.

The scoring itself (fusion, keyword normalisation, recency) is `server/ranking.py`; this module
decides which searches run for the configured mode and runs them concurrently. The keyword search
looks for the query's content words, the dense one for a blend of them and the words as asked
(`core/query.py`). The dense search fetches a pool wider than the page: its
cosines gate the keyword evidence, and on an engine without BM25 (a Milvus server before 2.5)
the pool's texts are scored by BM25 here (`core/keyword_evidence.py`), so hybrid search holds.
With MEMORY_QUERY_REWRITE, the LLM's rewrites of the query (`core/rewrite.py`) are searched like
the query, and each memory's score is its mean over the query and the rewrites. A query that names
a period ("in May 2023", `core/periods.py`) is also searched among the memories created in it,
which move up (`ranking.favour_period`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import anyio

from milvus_memory_mcp import filters, ranking
from milvus_memory_mcp.core.keyword_evidence import SERVER_POOL, bm25_over
from milvus_memory_mcp.core.periods import asked_period, period_conditions
from milvus_memory_mcp.core.query import content_query, dense_vectors, favour_answer_type, query_words, scope_names
from milvus_memory_mcp.core.rewrite import QueryRewriter
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.errors import MemoryServiceError
from milvus_memory_mcp.filters import And
from milvus_memory_mcp.records import now_us
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Hits, VectorStore

# Each text's dense query vector and the model that made it (None: each search embeds its own).
Embedded = list[tuple[str, list[float]] | None]
# Each search of a hybrid query fetches this many candidates (at least `limit`) before fusing.
FUSION_CANDIDATES = 20
# The dense pool whose cosines gate keyword evidence (LoCoMo dev R@10 0.668 with 100, 0.666 with 200).
GATE_POOL = 100


@dataclass
class Searcher:
    settings: Settings
    vectors: VectorStore
    embedder: Embedder
    rewriter: QueryRewriter | None = None

    async def search(self, text: str, where: And, limit: int) -> Hits:
        """The best `limit` memories for `text` within `where`, best first, with recency applied."""
        s = self.settings
        rewrites = await self.rewriter.rewrites(text) if self.rewriter else []
        period = asked_period(text, datetime.now(timezone.utc))
        texts = [text, *rewrites]
        # Embedded once, in one call, when several searches need them; else each search embeds its
        # query while its keyword search runs.
        embedded: Embedded = await self._embedded(texts, where) if rewrites or period else [None]
        hits = await self._ranked(texts, embedded, where, limit)
        if period is not None:
            inside = await self._ranked(texts, embedded, filters.combine(where, period_conditions(period)), limit)
            hits = ranking.favour_period(hits, inside, ranking.PERIOD_WEIGHT)
        hits = favour_answer_type(text, hits)
        return ranking.with_recency(hits, s.recency_weight, s.recency_half_life_days, now_us())[:limit]

    async def _embedded(self, texts: list[str], where: And) -> Embedded:
        """Each text's dense query vector and the model that made it (None where no search needs one)."""
        if self._keywords_alone():
            return [None] * len(texts)
        model = self.embedder.model_id
        return [(model, v) for v in await dense_vectors(self.embedder, texts, scope_names(where))]

    async def _ranked(self, texts: list[str], embedded: Embedded, where: And, limit: int) -> Hits:
        """Candidates best first, scored as `server.ranking` documents for the configured mode: for
        the query, or the mean over the query and its rewrites (`texts`)."""
        names = scope_names(where)
        rankings = [await self._ranked_one(t, names, where, limit, e) for t, e in zip(texts, embedded, strict=True)]
        return rankings[0] if len(rankings) == 1 else ranking.mean_of(rankings)

    def _keywords_alone(self) -> bool:
        """Keyword mode on an engine with BM25: no embedding is needed."""
        return self.settings.search_mode == "keyword" and self.vectors.keyword_search

    async def _ranked_one(
        self, text: str, names: frozenset[str], where: And, limit: int, embedded: tuple[str, list[float]] | None = None
    ) -> Hits:
        """One query's candidates; `embedded`: its dense query's vector already made, and by which model."""
        query = content_query(text, names)  # for the keyword search
        mode = self.settings.search_mode
        engine_bm25 = self.vectors.keyword_search
        # Recency may reorder, so it needs more candidates than the page.
        hybrid_or_recency = mode == "hybrid" or self.settings.recency_weight > 0
        wanted = max(limit, FUSION_CANDIDATES) if hybrid_or_recency else limit
        if self._keywords_alone():
            return ranking.keyword_scores(await self.vectors.search_keywords(query, where, wanted))

        async def dense(size: int) -> Hits:
            model, hits = self.embedder.model_id, []
            if embedded is not None and embedded[0] == model:
                vector = embedded[1]
            else:
                [vector] = await dense_vectors(self.embedder, [text], names)
            try:
                hits = await self.vectors.search(vector, where, size)
            except (MemoryServiceError, ValueError):  # ValueError: the search index's, for another dimension
                if self.embedder.model_id == model:
                    raise
            if self.embedder.model_id != model:  # `reembed` switched the embedder meanwhile: once more
                return await dense(size)
            return hits

        if mode == "dense":
            return await dense(wanted)
        if not engine_bm25:
            pool = await dense(max(wanted, SERVER_POOL))
            keyword = bm25_over(query, pool, wanted)
            if mode == "keyword":
                return ranking.keyword_scores(keyword)
            return ranking.fuse(pool[:wanted], keyword, self.settings.keyword_weight, pool, query_words(query))
        # The keyword search runs while the query is embedded and searched; errors are caught here
        # so that no ExceptionGroup reaches the caller.
        found: dict[str, Hits] = {}
        failed: list[MemoryServiceError] = []

        async def run(name: str, search: Callable[[], Awaitable[Hits]]) -> None:
            try:
                found[name] = await search()
            except MemoryServiceError as e:
                failed.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "dense", lambda: dense(max(wanted, GATE_POOL)))
            tg.start_soon(run, "keyword", lambda: self.vectors.search_keywords(query, where, wanted))
        if failed:
            raise failed[0]
        pool = found["dense"]
        return ranking.fuse(pool[:wanted], found["keyword"], self.settings.keyword_weight, pool, query_words(query))
