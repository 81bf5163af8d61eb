"""Whose memories a call may see and change: the scope a call resolves to, and the caller's rights.

A credential may bind a scope (HTTP tokens, server/auth.py): its fields are fixed and cannot be
replaced, only narrowed with the fields it leaves free. A call that names no scope gets the
caller's default user (the calling process's MEMORY_USER_ID), if any. A memory outside the
caller's bound scope is "not found", with the same message as an unknown id.
"""

from __future__ import annotations

from milvus_memory_mcp.errors import InvalidInput, PermissionDenied, not_found
from milvus_memory_mcp.history import RecordStore
from milvus_memory_mcp.records import Caller, MemoryRecord, Scope
from milvus_memory_mcp.validation import check_memory_id, check_scope

NO_SCOPE = (
    'Name at least one of user_id, agent_id or run_id (for example user_id="alice"), '
    "or start the server with MEMORY_USER_ID set."
)


def resolve(explicit: Scope, caller: Caller, default_user: str | None, *, use_default: bool = True) -> Scope:
    """The scope a call acts on: the named one within the caller's bound scope, else the default user."""
    explicit = check_scope(explicit.user_id, explicit.agent_id, explicit.run_id)
    bound = caller.bound
    if bound is not None:
        merged = {}
        for name, value in (
            ("user_id", explicit.user_id),
            ("agent_id", explicit.agent_id),
            ("run_id", explicit.run_id),
        ):
            fixed = getattr(bound, name)
            if fixed and value and value != fixed:
                raise PermissionDenied(f"This credential is limited to {name}={fixed!r}; it cannot use {value!r}.")
            merged[name] = fixed or value
        scope = Scope(**merged)
        if not scope.is_empty():
            return scope
    if not explicit.is_empty():
        return explicit
    default = caller.default_user_id or default_user
    if use_default and default:
        return Scope(user_id=default)
    raise InvalidInput(NO_SCOPE)


def check_writable(caller: Caller) -> None:
    if caller.read_only:
        raise PermissionDenied("This credential is read-only; it cannot change memories.")


async def owned(
    records: RecordStore, memory_id: object, caller: Caller, *, include_deleted: bool = False
) -> MemoryRecord:
    """The memory `memory_id` if the caller may see it (live, unless `include_deleted`), else NotFound."""
    memory_id = check_memory_id(memory_id)
    record = await records.get(memory_id)
    if record is None or (record.deleted_at is not None and not include_deleted):
        raise not_found(memory_id)
    if caller.bound is not None and not caller.bound.contains(record):
        raise not_found(memory_id)
    return record
