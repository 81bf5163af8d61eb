"""Filter trees (server/filters.py) rendered for PostgreSQL: the twin of `filters.to_sql` (SQLite).

Same semantics, tested case by case against the SQLite rendering (tests/integration/
test_filters_postgres.py): three-valued (a missing or null metadata key is unknown, NULL, and NOT
keeps it unknown), numbers with numbers (true/false count as 1/0), strings with strings in
code-point order (COLLATE "C"), `contains` as array element or substring. `metadata` is JSON text,
read as jsonb here. Values and keys are always parameters (`?`, numbered by database.py); keys
were whitelisted by the parser.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from milvus_memory_mcp.filters import _ORDER_OPS, And, Cond, Node, Not, Or


def to_pg(tree: Node) -> tuple[str, list[Any]]:
    """A PostgreSQL WHERE fragment over the `memories` columns, with its parameters ('TRUE' when empty)."""
    if isinstance(tree, And) and not tree.parts:
        return "TRUE", []
    params: list[Any] = []
    return _pg(tree, params), params


def _pg(node: Node, params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_pg(p, params) for p in node.parts) + ")" if node.parts else "TRUE"
    if isinstance(node, Or):
        return "(" + " OR ".join(_pg(p, params) for p in node.parts) + ")"
    if isinstance(node, Not):
        return f"(NOT {_pg(node.part, params)})"
    if isinstance(node.value, tuple):
        any_of = "(" + " OR ".join(_pg(Cond(node.key, "eq", v), params) for v in node.value) + ")"
        return any_of if node.op == "in" else f"(NOT {any_of})"
    if node.op == "ne":
        return f"(NOT {_pg(Cond(node.key, 'eq', node.value), params)})"
    if node.kind != "metadata":
        return _column(node, params)
    return _json(node, params)


def _column(node: Cond, params: list[Any]) -> str:
    params.append(node.value)
    if node.kind == "time":
        op = "=" if node.op == "eq" else _ORDER_OPS[node.op]
        return f"({node.key} {op} ?::bigint)"
    if node.op == "contains":
        return f"(strpos({node.key}, ?::text) > 0)"
    op = "=" if node.op == "eq" else _ORDER_OPS[node.op]
    return f'({node.key} COLLATE "C" {op} ?::text)'


def _number(x: str) -> str:
    """A jsonb number or boolean (1 / 0) as numeric."""
    return (
        f"(CASE WHEN jsonb_typeof({x}) = 'boolean' THEN ({x})::text::boolean::int::numeric "
        f"ELSE ({x} #>> '{{}}')::numeric END)"
    )


def _emit(template: str, key: str, value: Any, cast: str, params: list[Any]) -> str:
    """`template` with each K (the key) and V (the value) a parameter, in order of appearance."""
    out = []
    for piece in re.split(r"(\bK\b|\bV\b)", template):
        if piece == "K":
            params.append(key)
            out.append("?::text")
        elif piece == "V":
            params.append(value)
            out.append(f"?::{cast}")
        else:
            out.append(piece)
    return "".join(out)


def _json(node: Cond, params: list[Any]) -> str:
    value = node.value
    assert not isinstance(value, tuple)
    x = "(metadata::jsonb -> K)"
    typ = f"jsonb_typeof({x})"
    unknown = f"WHEN {typ} IS NULL OR {typ} = 'null' THEN NULL"
    numeric = not isinstance(value, str)
    pg_value: Any = Decimal(int(value) if isinstance(value, bool) else repr(value)) if numeric else value
    cast = "numeric" if numeric else "text"
    same_type = f"{typ} IN ('number', 'boolean')" if numeric else f"{typ} = 'string'"
    val = _number(x) if numeric else f"({x} #>> '{{}}') COLLATE \"C\""
    if node.op in ("eq", *_ORDER_OPS):
        # eq: a value of another type is simply unequal (false); ordering across types is unknown.
        op, other = ("=", "FALSE") if node.op == "eq" else (_ORDER_OPS[node.op], "NULL")
        template = f"(CASE {unknown} WHEN {same_type} THEN {val} {op} V ELSE {other} END)"
        return _emit(template, node.key, pg_value, cast, params)
    # contains: an array holding the value, or a string holding the substring
    element = (
        f"jsonb_typeof(e.v) IN ('number', 'boolean') AND {_number('e.v')} = V"
        if numeric
        else "jsonb_typeof(e.v) = 'string' AND (e.v #>> '{}') = V"
    )
    array = f"WHEN {typ} = 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({x}) AS e(v) WHERE {element})"
    text = f"WHEN {typ} = 'string' THEN strpos({x} #>> '{{}}', V) > 0 " if isinstance(value, str) else ""
    return _emit(f"(CASE {unknown} {array} {text}ELSE FALSE END)", node.key, pg_value, cast, params)
