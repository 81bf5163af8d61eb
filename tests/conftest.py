"""Shared fixtures: real Milvus Lite and SQLite in temp dirs, real MCP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.embedders.local import LocalEmbedder
from server.service import MemoryService
from server.settings import Settings


class ToolFailed(Exception):
    """A tool call that came back with is_error; the message is what the agent would read."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    # One loaded model for the whole run: loading costs ~0.4 s and the embedder is stateless.
    return LocalEmbedder()


def make_settings(data_dir: Path, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, flush_delay=0.05, **extra)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def service(settings: Settings, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryService]:
    async with MemoryService(settings, embedder=local_embedder) as svc:
        yield svc


@pytest.fixture
async def client(service: MemoryService) -> AsyncIterator[Client]:
    async with Client(build_server(service)) as c:
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool; return its structured result or raise ToolFailed with the agent-visible text."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise ToolFailed(" ".join(getattr(c, "text", "") for c in result.content))
    assert result.structured_content is not None
    return dict(result.structured_content)


async def error_of(client: Client, tool: str, **args: Any) -> str:
    """Call a tool that must fail; return the error text the agent sees."""
    with pytest.raises(ToolFailed) as e:
        await call(client, tool, **args)
    return str(e.value)
