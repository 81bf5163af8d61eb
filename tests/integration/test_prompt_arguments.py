"""The memory_guide prompt's arguments, through a real MCP client: an unknown one is refused as
invalid params naming it and the known ones (not the SDK's bare "Error rendering prompt")."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextContent

pytestmark = pytest.mark.anyio


async def test_an_unknown_prompt_argument_is_named(client: Client) -> None:
    for arguments, named in (
        ({"bogus": "x"}, "bogus"),
        ({"user_id": "alice", "top_k": "3", "limit": "1"}, "limit, top_k"),
    ):
        with pytest.raises(MCPError) as e:
            await client.get_prompt("memory_guide", arguments)
        assert e.value.code == INVALID_PARAMS
        assert e.value.message == f"memory_guide has no argument {named}; its arguments are: user_id."


async def test_the_known_argument_still_renders(client: Client) -> None:
    for arguments, who in (({"user_id": "alice"}, ' (user_id="alice")'), ({}, "")):
        got = await client.get_prompt("memory_guide", arguments)
        content = got.messages[0].content
        assert isinstance(content, TextContent)
        assert content.text.startswith(f"Use the memory tools like this{who}:")
    [prompt] = (await client.list_prompts()).prompts
    assert [(a.name, a.required) for a in prompt.arguments or []] == [("user_id", False)]


async def test_an_unknown_prompt_is_invalid_params_naming_the_prompts_there_are(client: Client) -> None:
    with pytest.raises(MCPError) as e:
        await client.get_prompt("nope", {})
    assert e.value.code == INVALID_PARAMS
    assert e.value.message == "Unknown prompt 'nope'; the prompts are: memory_guide."
