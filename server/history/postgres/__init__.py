"""PostgreSQL adapter of the history store (MEMORY_HISTORY_URL), part for part the SQLite one's twin.

- `database.py`: the asyncpg pool, the change counter, error translation;
- `url.py`: MEMORY_HISTORY_URL checked as asyncpg reads it, and shown with its secrets masked;
- `log.py`: each memory's state and its event log; `filters.py`: filter trees as SQL;
- `transfer.py`: export pages and verbatim imports;
- `pending.py`, `embeddings.py`, `reembed.py`: marks, stored vectors, `reembed`'s record;
- `lock.py`: the cluster-wide write lock (a session advisory lock on its own connection);
- `migrations.py`: the schema, its own named migrations.
"""

from __future__ import annotations

from milvus_memory_mcp.history.postgres.embeddings import EmbeddingCache
from milvus_memory_mcp.history.postgres.lock import ClusterLock
from milvus_memory_mcp.history.postgres.pending import PendingMarks
from milvus_memory_mcp.history.postgres.reembed import ReembedState
from milvus_memory_mcp.history.postgres.transfer import Transfer


class PostgresHistory(Transfer, PendingMarks, EmbeddingCache, ReembedState, ClusterLock):
    """The record of every memory and every change to it, in a PostgreSQL database."""
