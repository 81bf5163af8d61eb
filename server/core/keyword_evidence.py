"""Keyword evidence for engines without BM25 (a Milvus server before 2.5): BM25 over the dense candidates.

A Milvus 2.3 / 2.4 server has no BM25 function, so hybrid search would silently fall back to
dense alone (LoCoMo dev R@10 0.51 instead of 0.66). Instead the dense search fetches a wider pool
(`SERVER_POOL` candidates, 400) and this module scores those candidates' texts with BM25 (k1 and b
from `server.keywords`, as `server.search_index`), the document frequencies and average length taken over the
pool itself. The fused ranking then sees keyword evidence as on Lite. Measured on the LoCoMo dev
split (bench/retrieval.py's search, 200 candidates): R@10 0.669 against 0.668 with BM25 over the
whole collection; 100 candidates gave 0.643, 50 gave 0.618. With k1 0.9 / b 0.3, on a Milvus 2.3.5
server: 0.674 against Lite's 0.683. With conversation context, a reply is often found by its
context's words at a low cosine of its own, below the 200 closest: 400 candidates give 0.777
against Lite's 0.778, 200 gave 0.758 (LoCoMo dev, dated sessions, 2026-11-29; search p50 +9 ms).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from milvus_memory_mcp.keywords import analyse, bm25_idf, bm25_tf, words_with_context
from milvus_memory_mcp.records import MemoryRecord, context_of

SERVER_POOL = 400  # dense candidates scored by keywords when the engine has no BM25

Hits = list[tuple[MemoryRecord, float]]


@lru_cache(maxsize=20_000)
def _words(text: str, context: str | None) -> Counter[str]:
    return Counter(words_with_context(analyse(text), context).split())


def bm25_over(query: str, pool: Hits, limit: int) -> Hits:
    """(record, BM25 > 0) of the pool's memories sharing a word with `query`, best first."""
    terms = Counter(analyse(query).split())
    if not terms or not pool:
        return []
    docs = [(record, _words(record.memory, context_of(record.metadata))) for record, _ in pool]
    n = len(docs)
    average = sum(sum(c.values()) for _, c in docs) / n or 1.0
    df = Counter(word for _, c in docs for word in c if word in terms)
    idf = {t: bm25_idf(n, df[t]) for t in terms if df[t]}
    out: Hits = []
    for record, counts in docs:
        length = sum(counts.values())
        score = sum(weight * idf[t] * bm25_tf(counts[t], length, average) for t, weight in terms.items() if counts[t])
        if score > 0:
            out.append((record, score))
    out.sort(key=lambda h: (-h[1], h[0].id))
    return out[:limit]
