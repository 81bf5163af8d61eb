"""JSON typed into a form (the dashboard's filters and metadata): nested deeper than 64 levels is
refused by name before Python's recursive decoder sees it; shallower text parses as before."""

from __future__ import annotations

import pytest

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.ui.backend import Refused
from milvus_memory_mcp.ui.views import json_object
from milvus_memory_mcp.validation import MAX_FORM_JSON_DEPTH, json_text_depth, parse_json_object


def nested(levels: int) -> str:
    """An object `levels` deep: {"a": {"a": ... 1}}."""
    return '{"a": ' * levels + "1" + "}" * levels


def test_the_depth_is_read_without_parsing_and_ignores_brackets_in_strings() -> None:
    assert json_text_depth("1") == 0
    assert json_text_depth('{"a": [1, {"b": []}]}') == 4
    assert json_text_depth('{"a": "[[[{{{", "b": "\\"[[["}') == 1
    assert json_text_depth("[" * 100_000) == 100_000  # malformed text is measured too


def test_at_the_limit_it_parses_and_one_deeper_is_refused_naming_the_depth() -> None:
    assert parse_json_object(nested(MAX_FORM_JSON_DEPTH), "filters")["a"]
    with pytest.raises(InvalidInput, match=r"^filters is nested 65 levels deep \(at most 64\)\.$"):
        parse_json_object(nested(MAX_FORM_JSON_DEPTH + 1), "filters")


@pytest.mark.parametrize(
    "text",
    ["[" * 5000 + "]" * 5000, "[" * 5000, '{"tags": ' + "[" * 990 + "1" + "]" * 990 + "}", nested(2000)],
    ids=["deep list", "deep unclosed", "deep value", "deep object"],
)
def test_deep_text_is_an_error_naming_the_problem_never_a_recursion_error(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^filters is nested \d+ levels deep \(at most 64\)\.$"):
        parse_json_object(text, "filters")
    with pytest.raises(Refused, match="nested"):
        json_object(text, "filters")


def test_other_bad_text_keeps_its_messages() -> None:
    with pytest.raises(Refused, match="^metadata is not JSON: "):
        json_object("{nope", "metadata")
    with pytest.raises(Refused, match="^filters must be a JSON object"):
        json_object("[1]", "filters")
    assert json_object("  ", "filters") is None and json_object('{"k": [1, 2]}', "filters") == {"k": [1, 2]}
