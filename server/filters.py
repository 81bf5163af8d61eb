"""Filters: parsed once into a small tree, then rendered for Milvus (search) or SQLite (listing).

The JSON form accepted from agents (documented in the tools' schema as `FILTERS_HELP`):

    {"category": "hobbies"}                          equality; several keys are ANDed
    {"priority": {"gte": 3, "lt": 7}}                operators: eq ne in nin gt gte lt lte contains
    {"created_at": {"gte": "2024-05-01T00:00:00Z"}}  time ranges, ISO-8601 (naive means UTC)
    {"OR": [{"category": "work"}, {"NOT": {"tags": {"contains": "done"}}}]}   AND / OR / NOT nest

A key is a scope field (user_id, agent_id, run_id), created_at / updated_at, or a top-level
metadata key. Operators and AND / OR / NOT may carry a leading `$` and any case.

Semantics (identical in both renderers, tested against each other): a condition on a metadata key
that is missing or null is unknown, and NOT of unknown stays unknown, so `ne`, `nin` and `NOT` never
match memories that lack the key. Numbers compare with numbers (true/false count as 1/0, as in
Milvus Lite), strings with strings (code-point order); `contains` means "array holds the value" or
"string holds the substring".

Safety: user text never reaches a Milvus expression except through `quote()` / `literal()`; keys
are checked against a whitelist pattern. SQLite gets bound parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import SCOPE_FIELDS, Scope
from milvus_memory_mcp.validation import (
    INT64_MAX,
    INT64_MIN,
    METADATA_KEY_RE,
    check_plain_string,
    has_control_chars,
    is_int64,
)

Scalar = Union[str, int, float, bool]
MAX_FILTER_VALUE_BYTES = 1024
MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 100
MAX_IN_VALUES = 100
TIME_FIELDS = ("created_at", "updated_at")
OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains")
_ORDER_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_LOGICAL = ("and", "or", "not")


@dataclass(frozen=True)
class Cond:
    """One condition: `key op value`; `value` is a tuple for in / nin."""

    key: str
    op: str
    value: Scalar | tuple[Scalar, ...]

    @property
    def kind(self) -> str:
        if self.key in SCOPE_FIELDS:
            return "scope"
        if self.key in TIME_FIELDS:
            return "time"
        return "metadata"


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Union[Cond, And, Or, Not]


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


# parsing


def check_filter_value(key: str, value: Any) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not is_int64(value):
            # Stored integers are 64-bit (SQLite and Milvus): a larger one cannot be compared exactly.
            raise InvalidInput(
                f"filter value for {key!r} is an integer outside the signed 64-bit range ({INT64_MIN} to {INT64_MAX})."
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"filter value for {key!r} must be a finite number.")
        return value
    if isinstance(value, str):
        return check_plain_string(value, f"filter value for {key!r}", MAX_FILTER_VALUE_BYTES)
    raise InvalidInput(f"filter value for {key!r} must be a string, number or boolean, got {_shown(value)}.")


def parse_time(key: str, value: Any) -> int:
    """An ISO-8601 string (naive means UTC) as microseconds since the epoch, the stores' unit."""
    if not isinstance(value, str):
        raise InvalidInput(
            f'filter on {key!r} takes an ISO-8601 time string such as "2024-05-01T12:00:00Z", got {_shown(value)}.'
        )
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f'filter on {key!r}: {value[:60]!r} is not an ISO-8601 time (e.g. "2024-05-01" or '
            '"2024-05-01T12:00:00+02:00").'
        ) from None
    return epoch_us(parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))


def epoch_us(t: datetime) -> int:
    """An aware datetime as microseconds since the epoch, exactly (no float rounding)."""
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_instant(name: str, value: object) -> int | None:
    """An argument that names a time (`as_of`, `at`) as µs since the epoch; None stays None."""
    if value is None:
        return None
    try:
        return parse_time(name, value)
    except InvalidInput:
        shown = repr(value)[:60]
        raise InvalidInput(f'{name} must be an ISO-8601 time such as "2024-05-01T12:00:00Z", got {shown}.') from None


class _Parser:
    def __init__(self) -> None:
        self.count = 0

    def node(self, obj: object, depth: int) -> Node:
        if depth > MAX_FILTER_DEPTH:
            raise InvalidInput(f"filters are nested deeper than {MAX_FILTER_DEPTH} levels.")
        if not isinstance(obj, dict):
            raise InvalidInput(
                f'each filter must be a JSON object such as {{"category": "hobbies"}}, got {_shown(obj)}.'
            )
        if not obj:
            raise InvalidInput("a filter object is empty; give at least one condition.")
        parts = [self.entry(k, v, depth) for k, v in obj.items()]
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def entry(self, key: object, value: object, depth: int) -> Node:
        if not isinstance(key, str):
            raise InvalidInput(f"filter key {key!r} is not a string.")
        logical = key.lstrip("$").lower()
        if logical in _LOGICAL:
            if logical == "not":
                return Not(self.node(value, depth + 1))
            if not isinstance(value, list) or not value:
                raise InvalidInput(f"{key} takes a non-empty list of filter objects, got {_shown(value)}.")
            parts = tuple(self.node(v, depth + 1) for v in value)
            return And(parts) if logical == "and" else Or(parts)
        if not METADATA_KEY_RE.fullmatch(key):
            raise InvalidInput(
                f"filter key {key!r} is not allowed: use a scope field (user_id, agent_id, run_id), "
                "created_at, updated_at, a metadata key of letters, digits, '_' or '-', or AND / OR / NOT."
            )
        if isinstance(value, dict):
            if not value:
                raise InvalidInput(f'filter on {key!r} has an empty operator object; use e.g. {{"gte": 3}}.')
            conds = [self.cond(key, op, v) for op, v in value.items()]
            return conds[0] if len(conds) == 1 else And(tuple(conds))
        if isinstance(value, list):
            raise InvalidInput(
                f'filter on {key!r}: a list needs an operator, e.g. {{{json.dumps(key)}: {{"in": {_shown(value)}}}}}.'
            )
        return self.cond(key, "eq", value)

    def cond(self, key: str, op: object, value: object) -> Cond:
        self.count += 1
        if self.count > MAX_FILTER_CONDITIONS:
            raise InvalidInput(f"filters hold more than {MAX_FILTER_CONDITIONS} conditions.")
        name = op.lstrip("$").lower() if isinstance(op, str) else op
        if name not in OPERATORS:
            raise InvalidInput(f"filter on {key!r}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}.")
        assert isinstance(name, str)
        if name in ("in", "nin"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(f"filter on {key!r}: {name} takes a non-empty list of values, got {_shown(value)}.")
            if len(value) > MAX_IN_VALUES:
                raise InvalidInput(f"filter on {key!r}: {name} takes at most {MAX_IN_VALUES} values.")
            return Cond(key, name, tuple(self.value(key, name, v) for v in value))
        return Cond(key, name, self.value(key, name, value))

    @staticmethod
    def value(key: str, op: str, value: object) -> Scalar:
        if key in TIME_FIELDS:
            if op == "contains":
                raise InvalidInput(f"filter on {key!r}: contains does not apply to times; use gte / lt.")
            return parse_time(key, value)
        checked = check_filter_value(key, value)
        if key in SCOPE_FIELDS and not isinstance(checked, str):
            raise InvalidInput(f"filter on {key!r} takes a string, got {_shown(value)}.")
        if op == "contains" and isinstance(checked, str) and ("%" in checked or "_" in checked):
            # Milvus LIKE has no escape for its wildcards, so such a substring cannot be matched exactly.
            raise InvalidInput(
                f"filter on {key!r}: contains cannot match '%' or '_' literally; use eq or in for such values."
            )
        return checked


def parse(filters: object) -> And:
    """Validate the agent's filter object into a tree (an empty And when there is none)."""
    if filters is None:
        return And(())
    if not isinstance(filters, dict):
        raise InvalidInput('filters must be a JSON object such as {"category": "hobbies"}.')
    if not filters:
        return And(())
    return And((_Parser().node(filters, 1),))


def scope_conditions(scope: Scope) -> And:
    return And(tuple(Cond(k, "eq", v) for k, v in scope.items()))


def scope_only(tree: And) -> Scope | None:
    """The scope when `tree` says nothing but "field == value" of scope fields (each field once)."""
    fields: dict[str, str] = {}
    for part in tree.parts:
        if isinstance(part, And):
            inner = scope_only(part)
            if inner is None:
                return None
            pairs = inner.items()
        elif isinstance(part, Cond) and part.kind == "scope" and part.op == "eq" and isinstance(part.value, str):
            pairs = [(part.key, part.value)]
        else:
            return None
        for key, value in pairs:
            if fields.setdefault(key, value) != value:
                return None
    return Scope(**fields) if fields else None


def pinned_scope(tree: And) -> list[tuple[str, str]]:
    """The (field, value) pairs of the "field == value" scope conditions every match must meet (those
    reached through nested ANDs), in order."""
    pairs: list[tuple[str, str]] = []

    def walk(node: Node) -> None:
        if isinstance(node, And):
            for part in node.parts:
                walk(part)
        elif isinstance(node, Cond) and node.kind == "scope" and node.op == "eq" and isinstance(node.value, str):
            pairs.append((node.key, node.value))

    walk(tree)
    return pairs


def combine(*trees: And) -> And:
    return And(tuple(p for t in trees for p in t.parts))


def within(scope: Scope, filters: object) -> And:
    """The agent's filters, validated, confined to the scope (a filter can narrow it, never widen it)."""
    return combine(scope_conditions(scope), parse(filters))


def _shown(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        text = type(value).__name__
    return text if len(text) <= 100 else text[:100] + "..."


# Milvus


def to_milvus(tree: Node) -> str:
    """A Milvus boolean expression; empty string when there is no condition."""
    if isinstance(tree, And) and not tree.parts:
        return ""
    return _milvus(tree)


def _milvus(node: Node) -> str:
    if isinstance(node, And):
        return "(" + " and ".join(_milvus(p) for p in node.parts) + ")" if node.parts else "true"
    if isinstance(node, Or):
        return "(" + " or ".join(_milvus(p) for p in node.parts) + ")"
    if isinstance(node, Not):
        return f"(not {_milvus(node.part)})"
    field = f'metadata["{node.key}"]' if node.kind == "metadata" else node.key
    op, value = node.op, node.value
    if isinstance(value, tuple):
        # Milvus Lite refuses `in` on a JSON path, so in/nin are an OR of equalities on every field.
        any_of = "(" + " or ".join(f"({field} == {literal(v)})" for v in value) + ")"
        return any_of if op == "in" else f"(not {any_of})"
    if op == "eq":
        return f"({field} == {literal(value)})"
    if op == "ne":
        return f"(not ({field} == {literal(value)}))"
    if op in _ORDER_OPS:
        return f"({field} {_ORDER_OPS[op]} {literal(value)})"
    # contains: array element, or substring of a string
    terms = []
    if node.kind == "metadata":
        terms.append(f"json_contains({field}, {literal(value)})")
    if isinstance(value, str):
        terms.append(f"({field} like {quote('%' + value + '%')})")
    return "(" + " or ".join(terms) + ")"


# SQLite (three-valued like Milvus: NULL is "unknown", and NOT NULL stays NULL)

_NUMERIC_TYPES = "('integer', 'real', 'true', 'false')"


def to_sql(tree: Node) -> tuple[str, list[Any]]:
    """A SQLite WHERE fragment over the `memories` table, with its parameters ('1' when empty)."""
    if isinstance(tree, And) and not tree.parts:
        return "1", []
    params: list[Any] = []
    return _sql(tree, params), params


def _sql(node: Node, params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_sql(p, params) for p in node.parts) + ")" if node.parts else "1"
    if isinstance(node, Or):
        return "(" + " OR ".join(_sql(p, params) for p in node.parts) + ")"
    if isinstance(node, Not):
        return f"(NOT {_sql(node.part, params)})"
    if isinstance(node.value, tuple):
        any_of = "(" + " OR ".join(_sql(Cond(node.key, "eq", v), params) for v in node.value) + ")"
        return any_of if node.op == "in" else f"(NOT {any_of})"
    if node.op == "ne":
        return f"(NOT {_sql(Cond(node.key, 'eq', node.value), params)})"
    if node.kind != "metadata":
        return _sql_column(node, params)
    return _sql_json(node, params)


def _sql_column(node: Cond, params: list[Any]) -> str:
    if node.op == "contains":
        params.append(node.value)
        return f"(instr({node.key}, ?) > 0)"
    params.append(node.value)
    op = "=" if node.op == "eq" else _ORDER_OPS[node.op]
    return f"({node.key} {op} ?)"


def _sql_json(node: Cond, params: list[Any]) -> str:
    path = f'$."{node.key}"'
    value = node.value
    assert not isinstance(value, tuple)
    typ = "json_type(metadata, ?)"
    val = "json_extract(metadata, ?)"
    unknown = f"WHEN {typ} IS NULL OR {typ} = 'null' THEN NULL"
    params += [path, path]
    numeric = not isinstance(value, str)
    sql_value = int(value) if isinstance(value, bool) else value
    same_type = f"{typ} IN {_NUMERIC_TYPES}" if numeric else f"{typ} = 'text'"
    if node.op == "eq":
        # A value of another type is simply unequal (false), as in Milvus Lite.
        params += [path, path, sql_value]
        return f"(CASE {unknown} WHEN {same_type} THEN {val} = ? ELSE 0 END)"
    if node.op in _ORDER_OPS:
        # Ordering across types is unknown (NULL), as in Milvus Lite.
        params += [path, path, sql_value]
        return f"(CASE {unknown} WHEN {same_type} THEN {val} {_ORDER_OPS[node.op]} ? ELSE NULL END)"
    # contains
    element_type = "e.type IN ('integer', 'real', 'true', 'false')" if numeric else "e.type = 'text'"
    params += [path, path, sql_value]
    array = (
        f"WHEN {typ} = 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?) AS e "
        f"WHERE {element_type} AND e.value = ?)"
    )
    if isinstance(value, str):
        params += [path, path, value]
        return f"(CASE {unknown} {array} WHEN {typ} = 'text' THEN instr({val}, ?) > 0 ELSE 0 END)"
    return f"(CASE {unknown} {array} ELSE 0 END)"
