"""Whose memories a call may see and change: the scope a call resolves to, and the caller's rights.

A credential may bind a scope (HTTP tokens, server/auth.py): its fields are fixed and cannot be
replaced, only narrowed with the fields it leaves free. A call that names no scope gets the
caller's default user (the calling process's MEMORY_USER_ID), if any. A memory outside the
caller's bound scope is "not found", with the same message as an unknown id.

Mem0 habit: a call that names no scope argument but puts scope keys in `filters`
(`filters={"user_id": "alice"}`) acts on that scope; a scope key there that is not a plain string
(`{"user_id": {"in": [...]}}`) cannot name a scope and is refused saying so.
"""

from __future__ import annotations

from milvus_memory_mcp.errors import InvalidInput, PermissionDenied, not_found
from milvus_memory_mcp.history import RecordStore
from milvus_memory_mcp.records import SCOPE_FIELDS, Caller, MemoryRecord, Scope
from milvus_memory_mcp.validation import check_memory_id, check_scope

NO_SCOPE = (
    'Name at least one of user_id, agent_id or run_id (for example user_id="alice"; '
    'filters={"user_id": "alice"} counts too), or start the server with MEMORY_USER_ID set.'
)
ALREADY_DELETED = "It was already deleted; nothing changed (its history stays in memory_history)."


def from_filters(explicit: Scope, filters: object) -> Scope:
    """`explicit`, or, when it names nothing, the scope keys a Mem0-style `filters` holds as strings."""
    if not explicit.is_empty() or not isinstance(filters, dict):
        return explicit
    named: dict[str, str] = {}
    for key in SCOPE_FIELDS:
        value = filters.get(key)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidInput(
                f"filters.{key} is not a plain string, so it cannot name the scope: pass {key} as an argument "
                f'(e.g. {key}="alice") and keep the condition in filters.'
            )
        named[key] = value
    return Scope(**named)


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


def for_delete_all(
    explicit: Scope, filters: object, confirm: object, caller: Caller, default_user: str | None
) -> Scope:
    """The scope `delete_all_memories` acts on: named (or the caller's bound one, never the default
    user alone), writable, and confirmed."""
    check_writable(caller)
    scope = from_filters(check_scope(explicit.user_id, explicit.agent_id, explicit.run_id), filters)
    if scope.is_empty() and caller.bound is None:
        raise InvalidInput("delete_all_memories needs a scope: name user_id, agent_id or run_id.")
    scope = resolve(scope, caller, default_user, use_default=False)
    if confirm is not True:
        raise InvalidInput(f"This would delete every memory of {scope.describe()}; call again with confirm=true.")
    return scope


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
