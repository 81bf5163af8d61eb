"""The history store: SQLite keeps the record of every memory and every change to it.

Contract of a `HistoryStore` (see `sqlite.SQLiteHistory`):
- `commit(changes)` writes, in one transaction, each memory's new state, its history row and a
  pending mark; `revert(changes)` undoes exactly that; `clear_pending(ids)` removes the marks
  once the vector store agrees; `pending_ids()` lists marks left by a crash.
- `get`, `find_live_by_hash`, `list_live`, `history` read the record.
"""

from __future__ import annotations

from .sqlite import SQLiteHistory

__all__ = ["SQLiteHistory"]
