"""What an agent reads in tools/list and the server instructions: when to call each tool, with examples."""

from __future__ import annotations

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio


async def test_every_tool_says_when_to_call_it_briefly_without_docstring_indentation(client: Client) -> None:
    tools = {tool.name: tool.description or "" for tool in (await client.list_tools()).tools}
    for name, description in tools.items():
        assert 20 < len(description) < 300, name  # every byte is paid for in the agent's context
        assert all(line == line.strip() for line in description.splitlines()), f"{name}: {description!r}"
    assert "before answering" in tools["search_memories"]
    assert "only when the user explicitly asks" in tools["delete_all_memories"]


async def test_arguments_an_agent_must_shape_have_an_example(client: Client) -> None:
    tools = {t.name: t.input_schema["properties"] for t in (await client.list_tools()).tools}
    for tool, name in [
        ("add_memory", "messages"),
        ("add_memory", "user_id"),
        ("add_memory", "metadata"),
        ("search_memories", "query"),
        ("search_memories", "threshold"),
        ("search_memories", "filters"),
        ("update_memory", "data"),
    ]:
        description = tools[tool][name].get("description", "")
        assert "e.g." in description or '{"' in description, f"{tool}.{name}: {description}"


async def test_add_memory_describes_a_good_memory(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert "short, self-contained" in " ".join((tools["add_memory"].description or "").split())
    assert "self-contained" in (tools["update_memory"].description or "")


async def test_instructions_are_short_and_the_prompt_states_the_scope_rules(client: Client) -> None:
    instructions = client.instructions or ""
    assert len(instructions) < 400 and "search_memories" in instructions and "user_id" in instructions
    prompt = await client.get_prompt("memory_guide", {})
    text = str(prompt.messages[0].content)
    for words in ("user_id", "agent_id", "run_id", "AND", "default user", "own scope"):
        assert words in text, words
