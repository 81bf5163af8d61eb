"""SQLite adapter of the history store: one database file, its parts composed on one connection.

- `database.py`: the connection, its thread and error translation;
- `log.py`: each memory's state and its event log;
- `transfer.py`: export pages and verbatim imports;
- `pending.py`: marks of changes the vector store may not hold yet;
- `embeddings.py`: each text's stored vector;
- `reembed.py`: the active Milvus collection and `reembed`'s progress;
- `migrations.py`: the schema.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext

from milvus_memory_mcp.history.embeddings import EmbeddingCache
from milvus_memory_mcp.history.pending import PendingMarks
from milvus_memory_mcp.history.reembed import ReembedState
from milvus_memory_mcp.history.transfer import Transfer


class SQLiteHistory(Transfer, PendingMarks, EmbeddingCache, ReembedState):
    """The record of every memory and every change to it (the stores' single source of truth)."""

    def write_lock(self) -> AbstractAsyncContextManager[None]:
        """Nothing to take: one process owns a data dir's SQLite file (server/sharing.py)."""
        return nullcontext()
