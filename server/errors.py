"""Errors of the memory core.

MemoryServiceError            base; its message is written for the agent and is safe to show
 ├── InvalidInput             the caller sent something we refuse (names the field and why)
 ├── NotFound                 unknown id, or an id outside the caller's scope (same message)
 ├── PermissionDenied         a read-only credential attempted a write
 └── BackendError             a store or model failed; nothing was half-written
      ├── StoreUnavailable    Milvus or SQLite could not be opened or reached
      ├── EmbedderError       the embedding model or API failed
      ├── InferenceError      the LLM failed, refused or answered unparseably (add_memory then
      │                       stores the input verbatim instead of failing)
      └── ConfigurationError  settings that cannot work (e.g. a collection made by another embedder)

The tool layer turns every MemoryServiceError into a ToolError with the same message.
"""

from __future__ import annotations


class MemoryServiceError(Exception):
    """Base class: the message is meant for the agent."""


class InvalidInput(MemoryServiceError):
    pass


class NotFound(MemoryServiceError):
    pass


class PermissionDenied(MemoryServiceError):
    pass


class BackendError(MemoryServiceError):
    pass


class StoreUnavailable(BackendError):
    pass


class EmbedderError(BackendError):
    pass


class InferenceError(BackendError):
    pass


class ConfigurationError(BackendError):
    pass


def not_found(memory_id: str) -> NotFound:
    """The one message for an unknown id and for an id outside the caller's scope."""
    return NotFound(f"No memory '{memory_id}'. Use search_memories or list_memories to find valid ids.")
