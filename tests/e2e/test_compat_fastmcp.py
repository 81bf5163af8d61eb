"""fastmcp's `Client` (a Python client we did not write) against the real stdio server.

It builds typed objects from our output schemas, so a schema that does not describe the result breaks
here. The second test starts the server from `claude_desktop_config.example.json` (the `mcpServers`
shape Claude Desktop, Cursor and fastmcp read), only swapping the installed command for the checkout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

from ..support.processes import ROOT, server_env

pytestmark = pytest.mark.anyio


async def test_fastmcp_client_over_stdio_gets_typed_results_and_our_errors(tmp_path: Path) -> None:
    transport = StdioTransport(
        sys.executable, ["-m", "milvus_memory_mcp", "serve"], env=server_env(tmp_path), cwd=str(ROOT), keep_alive=False
    )
    async with Client(transport, timeout=60) as client:
        assert client.server_info is not None and client.server_info.name == "milvus-memory-mcp"
        assert client.instructions and "user_id" in client.instructions
        assert len(await client.list_tools()) == 9

        added = await client.call_tool(
            "add_memory", {"messages": "Likes to play tennis on weekends", "user_id": "bo", "metadata": {"n": 1}}
        )
        assert added.structured_content is not None
        memory_id = added.structured_content["results"][0]["id"]
        assert added.data.results[0].event == "ADD"  # typed from our outputSchema
        await client.call_tool("add_memory", {"messages": "Has a linear algebra exam on Nov 20", "user_id": "bo"})

        hits = (await client.call_tool("search_memories", {"query": "sports", "user_id": "bo"})).data.results
        assert hits[0].id == memory_id and hits[0].metadata == {"n": 1} and hits[0].score > hits[1].score
        updated = (await client.call_tool("update_memory", {"memory_id": memory_id, "data": "Plays squash"})).data
        assert updated.memory == "Plays squash"
        events = (await client.call_tool("memory_history", {"memory_id": memory_id})).data.events
        assert [e.event for e in events] == ["ADD", "UPDATE"]

        with pytest.raises(ToolError, match="text is empty"):
            await client.call_tool("add_memory", {"messages": "", "user_id": "bo"})
        page = (await client.call_tool("list_memories", {"user_id": "bo"})).data
        assert len(page.results) == 2  # still serving, nothing half-written


async def test_claude_desktop_example_config_starts_a_server_with_its_default_user(tmp_path: Path) -> None:
    config = json.loads((ROOT / "claude_desktop_config.example.json").read_text())
    entry = config["mcpServers"]["memory"]
    assert entry["command"] == "milvus-memory-mcp" and entry["args"][0] == "serve"
    user = entry["env"]["MEMORY_USER_ID"]
    # Run the checkout instead of the installed console script; keep the configured args and env.
    entry.update(
        command=sys.executable,
        args=["-m", "milvus_memory_mcp", *entry["args"]],
        cwd=str(ROOT),
        env=server_env(tmp_path, **entry["env"]),
    )
    async with Client(config, timeout=60) as client:
        added = (await client.call_tool("add_memory", {"messages": "Prefers window seats"})).data
        assert added.results[0].event == "ADD"
        hits = (await client.call_tool("search_memories", {"query": "seat preference", "verbose": True})).data.results
        assert [(h.memory, h.user_id) for h in hits] == [("Prefers window seats", user)]
