"""What the agent reads: tool results, compact by default.

Every byte of a result is paid for in the agent's context, so a compact result leaves out what is
null, empty or implied: `hash`, empty `metadata`, the scope fields the call named (equal in every
item), times in search and list items (`verbose=true` adds them), `updated_at` when it equals
`created_at`, and in history events what the memory id already says (the event id stays:
restore_memory takes it). The text block is the same
JSON as the structured content, without indentation. `verbose=true` returns every field that has
a value (a null field is left out in both forms).

`max_tokens` (search and list) keeps the first results whose text fits the budget, counted with
the embedder's tokenizer (server/tokens.py), and says so: `truncated: true` and a `note` naming
how to get the rest (a list page's `next_cursor` then points just after the last one shown).
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from milvus_memory_mcp import tokens
from milvus_memory_mcp.models import ListResult
from milvus_memory_mcp.records import SCOPE_FIELDS, Scope

# History events: what the result's memory_id (or the event itself) already says.
_EVENT_IMPLIED = ("memory_id", "is_deleted", "created_at", *SCOPE_FIELDS)  # the event id stays: restore_memory takes it


def respond(
    model: BaseModel, *, verbose: bool = False, named: Scope | None = None, max_tokens: int | None = None
) -> CallToolResult:
    """The tool result for `model`: compact unless `verbose`; `named` is the scope the call named."""
    # Null fields are left out even when verbose: the schemas declare no `null` (tools/arguments.py).
    data = model.model_dump(mode="json", exclude_none=True)
    if not verbose:
        data = compact(data, named or Scope())
    if max_tokens is not None:
        data = fit(data, model, max_tokens)
    text = dumps(data)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def fit(data: dict[str, Any], model: BaseModel, budget: int) -> dict[str, Any]:
    """`data` with as many of its first results as fit in `budget` tokens, and a note if any were cut."""
    items: list[Any] = data["results"]
    if not items or tokens.count(dumps(data)) <= budget:
        return data
    # What a cut result costs besides its items: the envelope, the note and a cursor.
    base = tokens.count(dumps(_cut(data, model, 1, len(items), budget))) - tokens.count(dumps(items[0]))
    used, kept = base, 0
    for item in items:
        used += tokens.count(dumps(item)) + 1
        if used > budget:
            break
        kept += 1
    while True:
        out = _cut(data, model, kept, len(items), budget)
        if kept == 0 or tokens.count(dumps(out)) <= budget:
            return out
        kept -= 1


def _cut(data: dict[str, Any], model: BaseModel, kept: int, total: int, budget: int) -> dict[str, Any]:
    out = {**data, "results": data["results"][:kept], "truncated": True}
    out.pop("next_cursor", None)
    if kept == 0:
        out["note"] = f"max_tokens={budget} is too small for one result; raise it."
    elif isinstance(model, ListResult):
        out["next_cursor"] = model.cursor_after(kept - 1)
        out["note"] = f"Cut to max_tokens={budget}: {kept} of {total} shown; pass next_cursor as cursor for the rest."
    else:
        out["note"] = f"Cut to max_tokens={budget}: {kept} of {total} shown; raise max_tokens for the rest."
    return out


def compact(data: dict[str, Any], named: Scope) -> dict[str, Any]:
    # A call that names no scope acts on one user (the default user, or a bound credential's).
    implied = {k for k, _ in named.items()} or {"user_id"}
    out = _drop_empty(data)
    if "results" in out and isinstance(out["results"], list):
        out["results"] = [_item(d, implied, listed=True) for d in out["results"]]
    elif "events" in out:
        out["events"] = [{k: v for k, v in e.items() if k not in _EVENT_IMPLIED} for e in out["events"]]
    elif "memory" in out and "id" in out and "event" not in out:
        out = _item(out, set(), listed=False)
    return out


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None or v == {} or (k == "truncated" and v is False):
            continue
        if isinstance(v, list):
            v = [_drop_empty(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out


def _item(d: dict[str, Any], implied: set[str], *, listed: bool) -> dict[str, Any]:
    if "event" in d:  # an add_memory result
        return d
    out = {k: v for k, v in d.items() if k != "hash" and k not in implied}
    if listed:
        out.pop("created_at", None)
        out.pop("updated_at", None)
    elif out.get("updated_at") == out.get("created_at"):
        out.pop("updated_at", None)
    if isinstance(out.get("score"), float):
        out["score"] = round(out["score"], 2)
    return out
