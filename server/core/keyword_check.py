"""Is the keyword text the vector store ranks by what this release's analysis makes? Checked at start-up.

A Milvus 2.5+ collection (or Lite's, with MEMORY_SEARCH_INDEX=false) keeps each memory's analysed
words in its `keywords` field, and its BM25 search ranks by them. After a change of
`keywords.ANALYSIS`, the rows written before it keep the old words, and rank by them, until
`doctor --repair` rewrites them. `store_state` records under `keyword_analysis` the analysis the
whole collection is known to hold. While that is not this release's (a new data dir, a data dir
made before the record, or after a change), each start checks every live memory once its stores
are open, in the background and in chunks (the differing ones are read again under the write lock,
when no write is in flight): none differs, and the analysis is recorded (no check at later starts);
some do, and a warning names how many and the command. Where the search index answers keyword
searches (Lite's default: built from SQLite, rebuilt when the analysis changes) or there is no
BM25 (Milvus before 2.5, the in-process store), the stored text ranks nothing: no check, and
nothing recorded (the index turned off later, the check runs then).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from milvus_memory_mcp.keywords import ANALYSIS

if TYPE_CHECKING:
    from milvus_memory_mcp.core.writes import WriteLock
    from milvus_memory_mcp.history import HistoryStore
    from milvus_memory_mcp.stores import Store

logger = logging.getLogger(__name__)

KEY = "keyword_analysis"
CHUNK = 1000


async def check_keyword_text(history: HistoryStore, vectors: Store, write_lock: WriteLock) -> int | None:
    """How many live memories' stored keyword text an older analysis wrote (None, unchecked, when
    the record says none, or the store's searches do not rank by it); records this release's
    analysis when there are none."""
    if not vectors.ranks_by_stored_keywords or (await history.store_state()).get(KEY) == str(ANALYSIS):
        return None
    suspects = await _stale(history, vectors, await history.live_ids())
    if suspects:
        async with write_lock:  # a write between the two reads above looks stale: read those again
            pending = set(await history.pending_ids())  # re-applied at the next start
            suspects = await _stale(history, vectors, [i for i in suspects if i not in pending])
    if suspects:
        logger.warning(
            "%d memories keep keyword text an older keyword analysis wrote, which keyword search ranks them "
            "by until it is rewritten: run `milvus-memory-mcp doctor --repair` (with this server's settings)",
            len(suspects),
        )
    else:
        await history.set_store_state({KEY: str(ANALYSIS)})
    return len(suspects)


async def _stale(history: HistoryStore, vectors: Store, ids: list[str]) -> list[str]:
    stale: list[str] = []
    for start in range(0, len(ids), CHUNK):
        records = await history.get_many(ids[start : start + CHUNK])
        stale += await vectors.stale_keywords([r for r in records.values() if r.deleted_at is None])
    return stale
