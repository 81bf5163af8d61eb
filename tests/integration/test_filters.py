"""Rich filters: the JSON form, its errors, and the Milvus and SQLite renderers agreeing on real data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from milvus_memory_mcp import filters
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.indexed import IndexedStore

from ..conftest import call, error_of, make_settings

pytestmark = pytest.mark.anyio

HOSTILE = 'x" or 1==1 or "'

# Metadata designed to hit the corners: missing keys, null, type mismatches, arrays, wildcards,
# booleans against numbers, quotes and backslashes.
ROWS: list[tuple[str, dict[str, Any], str | None]] = [
    ("tennis on weekends", {"category": "hobbies", "priority": 3, "tags": ["sport", "weekend"]}, "planner"),
    ("linear algebra exam", {"category": "task", "priority": 7, "tags": ["school"], "done": False}, None),
    ("likes jazz", {"category": "music", "priority": 3.5, "note": "50% off_sale"}, "planner"),
    ("allergic to peanuts", {"category": "health", "priority": "3", "done": True}, "coder"),
    ("no metadata at all", {}, None),
    ("null priority", {"priority": None, "category": "misc"}, "coder"),
    ("nested thing", {"category": {"z": 1}, "tags": [1, 2, 3]}, None),
    ("hostile tag", {"category": HOSTILE, "note": "a\\b", "tags": [HOSTILE]}, "planner"),
    ("priority one", {"priority": 1, "tags": []}, None),
    ("ünïcødé", {"category": "ünï", "note": "ünïcødé-用户"}, "coder"),
]

KEYS = ["category", "priority", "tags", "done", "note", "missing", "agent_id"]
VALUES: list[Any] = ["hobbies", "task", "music", "3", 3, 3.5, 7, 1, True, False, "sport", HOSTILE, "a\\b", "ünï", 2]


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return {rng.choice(["AND", "OR", "$or", "and"]): [random_filter(rng, depth + 1) for _ in range(2)]}
    if depth < 2 and roll < 0.25:
        return {"NOT": random_filter(rng, depth + 1)}
    key = rng.choice(KEYS)
    op = rng.choice(filters.OPERATORS)
    value: Any = rng.choice(VALUES)
    if key == "agent_id":
        value = rng.choice(["planner", "coder", "", "plan"])
    if op in ("in", "nin"):
        value = [rng.choice(VALUES) for _ in range(2)] if key != "agent_id" else ["planner", "coder"]
    if op == "contains" and isinstance(value, str) and ("%" in value or "_" in value):
        op = "eq"
    return {key: value} if op == "eq" and rng.random() < 0.5 else {key: {op: value}}


async def _matching(service: MemoryService, flt: dict[str, Any]) -> tuple[set[str], set[str]]:
    scope = Scope(user_id="u")
    hits = await service.search("anything", scope, limit=100, filters_=flt)
    listed = await service.list(scope, flt, limit=1000)
    return {h.memory for h in hits.results}, {m.memory for m in listed.results}


@pytest.mark.parametrize("search_index", [False, True], ids=["milvus-renderer", "search-index"])
async def test_filtered_search_and_list_select_the_same_memories(
    tmp_path: Path, local_embedder: LocalEmbedder, search_index: bool
) -> None:
    """Without the search index a filtered search runs in Milvus Lite (the Milvus renderer against
    the SQLite one); with it, the index searches the ids SQLite selects."""
    settings = make_settings(tmp_path / "data", search_index=search_index)
    async with MemoryService(settings, embedder=local_embedder) as service:
        assert isinstance(service.vectors, IndexedStore) == search_index
        await _renderers_agree(service)


async def _renderers_agree(service: MemoryService) -> None:
    for text, meta, agent in ROWS:
        await service.add(text, Scope(user_id="u", agent_id=agent), meta, infer=False)
    await service.add("someone else's", Scope(user_id="v"), {"category": "hobbies"}, infer=False)
    fixed: list[dict[str, Any]] = [
        {"category": "hobbies"},
        {"priority": {"gte": 3}},
        {"priority": {"ne": 3}},
        {"priority": {"nin": [3, 7]}},
        {"NOT": {"priority": {"gt": 2}}},
        {"priority": True},
        {"done": {"eq": 1}},
        {"tags": {"contains": "sport"}},
        {"tags": {"contains": 2}},
        {"note": {"contains": "ünï"}},
        {"note": {"contains": "\\"}},
        {"category": HOSTILE},
        {"tags": {"contains": HOSTILE}},
        {"OR": [{"category": "task"}, {"NOT": {"tags": {"contains": "weekend"}}}]},
        {"agent_id": {"in": ["planner", "coder"]}, "priority": {"lt": 4}},
        {"agent_id": {"ne": "planner"}},
        {"agent_id": {"contains": "plan"}},
        {"category": {"gt": "m"}},
        {"user_id": "v"},
    ]
    rng = random.Random(4)
    cases = fixed + [random_filter(rng) for _ in range(150)]
    nonempty = 0
    for flt in cases:
        searched, listed = await _matching(service, flt)
        assert searched == listed, flt
        nonempty += bool(listed)
    assert nonempty > len(cases) // 3  # the cases are not vacuous
    # spot-check the documented semantics on the real data
    assert (await _matching(service, {"priority": {"gte": 3}}))[1] == {
        "tennis on weekends",
        "linear algebra exam",
        "likes jazz",
    }
    missing_never_matches = (await _matching(service, {"NOT": {"priority": 3}}))[1]
    assert "no metadata at all" not in missing_never_matches and "likes jazz" in missing_never_matches
    assert (await _matching(service, {"category": HOSTILE}))[1] == {"hostile tag"}
    assert (await _matching(service, {"user_id": "v"}))[1] == set()  # a filter never widens the scope


async def test_time_ranges_accept_iso_8601(service: MemoryService) -> None:
    first = (await service.add("first", Scope(user_id="u"), infer=False)).results[0]
    record = await service.get(first.id)
    assert record.created_at is not None
    await service.add("second", Scope(user_id="u"), infer=False)
    after_first = {"created_at": {"gt": record.created_at}}
    assert [m.memory for m in (await service.list(Scope(user_id="u"), after_first)).results] == ["second"]
    hits = await service.search("first or second", Scope(user_id="u"), filters_=after_first)
    assert [h.memory for h in hits.results] == ["second"]
    upto = {"updated_at": {"lte": record.created_at}}
    assert [m.memory for m in (await service.list(Scope(user_id="u"), upto)).results] == ["first"]
    naive_future = {"created_at": {"gte": "2999-01-01"}}
    assert (await service.list(Scope(user_id="u"), naive_future)).results == []


def test_iso_times_become_microseconds_with_naive_as_utc() -> None:
    assert filters.parse_time("created_at", "1970-01-01T00:00:01Z") == 1_000_000
    assert filters.parse_time("created_at", "1970-01-01T01:00:00+01:00") == 0
    assert filters.parse_time("created_at", "1970-01-02") == 86_400_000_000


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"k": {"between": 1}}, "unknown operator 'between'"),
        ({"k": {"in": 3}}, "non-empty list"),
        ({"k": {"in": []}}, "non-empty list"),
        ({"k": [1, 2]}, 'a list needs an operator, e.g. {"k": {"in": [1, 2]}}'),
        ({"k": {}}, "empty operator object"),
        ({"OR": {"k": 1}}, "OR takes a non-empty list"),
        ({"AND": []}, "AND takes a non-empty list"),
        ({"NOT": [1]}, "must be a JSON object"),
        ({"k": {"gt": None}}, "filter value for 'k'"),
        ({"k": {"gt": {"x": 1}}}, "filter value for 'k'"),
        ({"created_at": {"gte": "yesterday"}}, "not an ISO-8601 time"),
        ({"created_at": {"gte": 5}}, "ISO-8601 time string"),
        ({"created_at": {"contains": "2024"}}, "contains does not apply"),
        ({"user_id": {"eq": 3}}, "takes a string"),
        ({"note": {"contains": "50%"}}, "cannot match '%' or '_'"),
        ({'k"] or true or metadata["k': 1}, "filter key"),
        ({"tag\n": 1}, "filter key"),
        ({"k": {"in": list(range(101))}}, "at most 100 values"),
        ({"NOT": {"NOT": {"NOT": {"NOT": {"NOT": {"NOT": {"NOT": {"NOT": {"k": 1}}}}}}}}}, "deeper than 8"),
    ],
)
def test_malformed_filters_name_the_problem(flt: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidInput) as e:
        filters.parse(flt)
    assert expected in str(e.value)


def test_hostile_values_only_reach_milvus_quoted() -> None:
    expr = filters.to_milvus(filters.parse({"OR": [{"k": HOSTILE}, {"k": {"contains": 'a"b\\'}}]}))
    assert '"x\\" or 1==1 or \\""' in expr
    assert '"%a\\"b\\\\%"' in expr


async def test_delete_all_with_filters_deletes_only_the_matching_memories(client: Client) -> None:
    await call(client, "add_memory", messages="keep me", user_id="u", metadata={"category": "keep"})
    await call(client, "add_memory", messages="drop me", user_id="u", metadata={"category": "drop", "n": 1})
    await call(client, "add_memory", messages="drop me too", user_id="u", metadata={"category": "drop", "n": 5})
    await call(client, "add_memory", messages="other user's", user_id="w", metadata={"category": "drop"})
    out = await call(
        client, "delete_all_memories", user_id="u", confirm=True, filters={"category": "drop", "n": {"lt": 3}}
    )
    assert out["deleted_count"] == 1
    left = {m["memory"] for m in (await call(client, "list_memories", user_id="u"))["results"]}
    assert left == {"keep me", "drop me too"}
    hits = (await call(client, "search_memories", query="drop me", user_id="u"))["results"]
    assert "drop me" not in {h["memory"] for h in hits}
    assert len((await call(client, "list_memories", user_id="w"))["results"]) == 1
    message = await error_of(client, "delete_all_memories", user_id="u", confirm=True, filters={"n": {"gt": [1]}})
    assert "filter value for 'n'" in message
    assert len((await call(client, "list_memories", user_id="u"))["results"]) == 2


async def test_filter_syntax_is_documented_in_the_tool_schemas(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    # the other tools refer to search_memories' description (every byte of tools/list costs context)
    for name in ("list_memories", "delete_all_memories"):
        assert "search_memories" in tools[name].input_schema["properties"]["filters"]["description"]
    described = tools["search_memories"].input_schema["properties"]["filters"]["description"]
    assert "gte" in described and "contains" in described and "created_at" in described and "NOT" in described
