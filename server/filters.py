"""Filters: parsed once into a small tree, then rendered for Milvus (search) or SQLite (listing).

The JSON form accepted from agents, for now: `{"key": value, ...}`, every pair an equality,
combined with AND. A key is a scope field (`user_id`, `agent_id`, `run_id`) or a metadata key.

Safety: user text never reaches a Milvus expression except through `quote()`, the one escaping
function; keys are checked against a whitelist pattern. SQLite gets bound parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Union

from .errors import InvalidInput
from .records import SCOPE_FIELDS, Scope
from .validation import METADATA_KEY_RE, has_control_chars

Scalar = Union[str, int, float, bool]
MAX_FILTER_VALUE_BYTES = 1024


@dataclass(frozen=True)
class Eq:
    key: str
    value: Scalar

    @property
    def is_scope(self) -> bool:
        return self.key in SCOPE_FIELDS


@dataclass(frozen=True)
class And:
    parts: tuple[Eq, ...]


def quote(value: str) -> str:
    """A Milvus string literal matching `value` exactly.

    Milvus Lite understands only the escapes \\" \\' \\\\ \\n \\r \\t; other control characters are
    refused by `check_filter_value` before they get here.
    """
    if has_control_chars(value):
        raise InvalidInput("A filter or scope value contains a control character.")
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def literal(value: Scalar) -> str:
    """Any scalar as a Milvus literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return quote(value)


def check_filter_value(key: str, value: Any) -> Scalar:
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"filter value for {key!r} must be a finite number.")
        return value
    if isinstance(value, str):
        if has_control_chars(value) or "\x00" in value:
            raise InvalidInput(f"filter value for {key!r} contains a control character.")
        if len(value.encode("utf-8")) > MAX_FILTER_VALUE_BYTES:
            raise InvalidInput(f"filter value for {key!r} is longer than {MAX_FILTER_VALUE_BYTES} bytes.")
        return value
    raise InvalidInput(f"filter value for {key!r} must be a string, number or boolean, got {type(value).__name__}.")


def parse(filters: object) -> And:
    """Validate the agent's filter object into a tree."""
    if filters is None:
        return And(())
    if not isinstance(filters, dict):
        raise InvalidInput('filters must be a JSON object such as {"category": "hobbies"}.')
    parts: list[Eq] = []
    for key, value in filters.items():
        if not isinstance(key, str) or not METADATA_KEY_RE.match(key):
            raise InvalidInput(
                f"filter key {key!r} is not allowed: use a scope field (user_id, agent_id, run_id) "
                "or a metadata key of letters, digits, '_' or '-'."
            )
        if isinstance(value, (dict, list)):
            raise InvalidInput(
                f"filter on {key!r}: only equality to a string, number or boolean is supported, "
                f"got {json.dumps(value)[:100]}."
            )
        parts.append(Eq(key, check_filter_value(key, value)))
    return And(tuple(parts))


def scope_conditions(scope: Scope) -> And:
    return And(tuple(Eq(k, v) for k, v in scope.items()))


def combine(*trees: And) -> And:
    return And(tuple(p for t in trees for p in t.parts))


def to_milvus(tree: And) -> str:
    """A Milvus boolean expression; empty string when there is no condition."""
    terms: list[str] = []
    for c in tree.parts:
        field = c.key if c.is_scope else f'metadata["{c.key}"]'
        terms.append(f"({field} == {literal(c.value)})")
    return " and ".join(terms)


def to_sql(tree: And) -> tuple[str, list[Any]]:
    """A SQLite WHERE fragment over the `memories` table, with its parameters ('1' when empty)."""
    terms: list[str] = []
    params: list[Any] = []
    for c in tree.parts:
        if c.is_scope:
            terms.append(f"{c.key} = ?")
            params.append(c.value)
            continue
        path = f'$."{c.key}"'
        if isinstance(c.value, bool):
            terms.append("json_type(metadata, ?) = ?")
            params += [path, "true" if c.value else "false"]
        elif isinstance(c.value, str):
            terms.append("(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)")
            params += [path, path, c.value]
        else:
            terms.append("(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) = ?)")
            params += [path, path, c.value]
    return (" AND ".join(terms) or "1"), params
