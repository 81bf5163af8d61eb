"""The README's copy-paste client configurations: valid JSON of the shape each client reads."""

from __future__ import annotations

import json
import re
from typing import Any

from fastmcp.mcp_config import MCPConfig, RemoteMCPServer, StdioMCPServer

from ..support.processes import ROOT

README = (ROOT / "README.md").read_text()
JSON_BLOCKS = re.findall(r"```json\n(.*?)```", README, flags=re.DOTALL)


def block_with(*keys: str) -> dict[str, Any]:
    found = [json.loads(b) for b in JSON_BLOCKS if all(f'"{key}"' in b for key in keys)]
    assert len(found) == 1, f"expected one README json block with {keys}, found {len(found)}"
    return found[0]


def test_every_readme_json_block_parses() -> None:
    assert len(JSON_BLOCKS) >= 3
    for block in JSON_BLOCKS:
        json.loads(block)


def test_readme_claude_desktop_config_is_the_example_file_verbatim() -> None:
    example = (ROOT / "claude_desktop_config.example.json").read_text()
    assert example.strip() in [b.strip() for b in JSON_BLOCKS]
    entry = json.loads(example)["mcpServers"]["memory"]
    assert (entry["command"], entry["args"]) == ("milvus-memory-mcp", ["serve"])
    assert all(key.startswith("MEMORY_") for key in entry["env"])


def test_readme_cursor_config_has_a_stdio_and_an_http_server_in_the_mcpservers_shape() -> None:
    cursor = block_with("mcpServers", "memory-http")
    servers = MCPConfig.from_dict(cursor).mcpServers
    assert isinstance(servers["memory"], StdioMCPServer) and servers["memory"].args == ["serve"]
    assert isinstance(servers["memory-http"], RemoteMCPServer)
    assert servers["memory-http"].url.endswith("/mcp")
    assert servers["memory-http"].headers["Authorization"].startswith("Bearer ")


def test_readme_vscode_config_uses_servers_with_a_type_and_declares_its_inputs() -> None:
    vscode = block_with("servers")
    assert "mcpServers" not in vscode
    servers = vscode["servers"]
    assert servers["memory"]["type"] == "stdio" and servers["memory"]["args"] == ["serve"]
    assert servers["memory-http"]["type"] == "http"
    declared = {item["id"] for item in vscode["inputs"]}
    used = set(re.findall(r"\$\{input:([^}]+)\}", json.dumps(vscode)))
    assert used and used <= declared
