"""The owners behind `MemoryService` (server/service.py), one job each; docs/ARCHITECTURE.md maps them.

- `startup.py`: opening the stores and the model, once, in order; readiness.
- `writes.py`: the write protocol across SQLite and the vector store (lock, pending marks, flush).
- `scopes.py`: whose memories a call may see and change.
- `messages.py`: `add_memory`'s messages, parsed and checked.
- `adds.py`: verbatim adds with exact and near-duplicate detection.
- `inferred.py`: LLM-inferred adds (extract, decide, apply).
- `search.py`: dense, keyword and hybrid search, ranked.
- `cursors.py`: list pagination cursors.
"""
