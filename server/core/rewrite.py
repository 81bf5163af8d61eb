"""Optional LLM query rewriting for `search_memories` (MEMORY_QUERY_REWRITE, off by default).

An agent's question ("What does she do for a living?") rarely shares words or form with the
memory that answers it ("Works as a nurse at St Mary's"). With an LLM configured and the setting
on, the LLM words up to three short facts that would answer the query, as memories are worded
(the hypothetical answers of HyDE). `core/search.py` searches each beside the query: their dense
candidates join the pool (a memory keeps its best cosine) and their words join the keyword query.
The query itself is always searched, so a rewrite can add candidates but never hide the plain
query's. A failed or slow LLM costs only its wait (at most `query_rewrite_timeout`): the search
goes on with the query alone, and says so in the log. Rewrites are kept per query text (LRU).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timezone

import anyio
from pydantic import BaseModel

from milvus_memory_mcp.errors import InferenceError
from milvus_memory_mcp.inference import ChatModel
from milvus_memory_mcp.inference.prompts import QUERIES_SCHEMA, REWRITE_SYSTEM, rewrite_input
from milvus_memory_mcp.inference.reconcile import parse_reply
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.validation import is_usable_text

logger = logging.getLogger(__name__)

MAX_REWRITES = 3
CACHE_SIZE = 512
MAX_REWRITE_CHARS = 300


class Queries(BaseModel):
    queries: list[str]


class QueryRewriter:
    def __init__(self, llm: ChatModel, timeout: float) -> None:
        self._llm = llm
        self._timeout = timeout
        self._cache: OrderedDict[str, list[str]] = OrderedDict()

    async def rewrites(self, query: str) -> list[str]:
        """Up to MAX_REWRITES short facts answering `query`, other than the query; [] on any failure."""
        key = " ".join(query.split())
        if (cached := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return cached
        found: list[str] | None = None
        with anyio.move_on_after(self._timeout):
            try:
                today = datetime.now(timezone.utc).date().isoformat()
                reply = await self._llm.complete(REWRITE_SYSTEM, rewrite_input(key, today), "queries", QUERIES_SCHEMA)
                found = _clean(parse_reply(reply, Queries).queries, key)
            except InferenceError as e:
                logger.warning("query rewrite failed, searching the query alone: %s", e)
                return []  # not cached: the next search asks again
        if found is None:
            logger.warning("query rewrite took over %.1f s, searching the query alone", self._timeout)
            return []
        self._cache[key] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found


def make_rewriter(settings: Settings, llm: ChatModel | None) -> QueryRewriter | None:
    """The query rewriter when an LLM is configured and MEMORY_QUERY_REWRITE is on; no I/O."""
    return QueryRewriter(llm, settings.query_rewrite_timeout) if llm is not None and settings.query_rewrite else None


def _clean(items: list[str], query: str) -> list[str]:
    """Distinct, non-empty, bounded rewrites other than the query itself, at most MAX_REWRITES."""
    seen = {query.casefold()}
    out: list[str] = []
    for item in items:
        text = " ".join(item.split())[:MAX_REWRITE_CHARS]
        if not is_usable_text(text):
            continue  # what a search would refuse as its query
        if text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out[:MAX_REWRITES]
