"""What an agent reads in tools/list and the server instructions: when to call each tool, with examples."""

from __future__ import annotations

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio


async def test_every_tool_says_when_to_call_it_without_docstring_indentation(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        description = tool.description or ""
        assert "Call it" in description, tool.name
        assert all(line == line.strip() for line in description.splitlines()), f"{tool.name}: {description!r}"


async def test_every_argument_has_a_description_with_an_example(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        for name, schema in tool.input_schema["properties"].items():
            description = schema.get("description", "")
            assert description, f"{tool.name}.{name} has no description"
            types = {branch.get("type") for branch in schema.get("anyOf", [schema])} - {"null"}
            if types != {"boolean"} and name != "cursor":  # a flag needs no example, an opaque cursor has none
                assert "e.g." in description or schema.get("examples"), f"{tool.name}.{name}: {description}"


async def test_add_memory_describes_a_good_memory(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert "short, self-contained" in " ".join((tools["add_memory"].description or "").split())
    assert "self-contained" in (tools["update_memory"].description or "")


async def test_instructions_state_the_scope_rules(client: Client) -> None:
    instructions = client.instructions or ""
    for words in ("user_id", "agent_id", "run_id", "AND", "default user", "own scope"):
        assert words in instructions, words
