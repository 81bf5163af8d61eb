"""Shared fixtures: real Milvus Lite and SQLite in temp dirs, real MCP clients.

The `engine` fixture is "lite" unless a module parametrises it with `ENGINES`: then each test
also runs against a real Milvus 2.3.5 standalone (tests/support/milvus_server.py), started once per
session, one fresh collection per test.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from .support.fake_openai import FakeOpenAI
from .support.milvus_server import MilvusStandalone, unavailable_reason
from .support.postgres_server import PostgresServer
from .support.postgres_server import unavailable_reason as postgres_unavailable

# Run a module's tests on Milvus Lite and on a Milvus server: `pytestmark = [..., ENGINES]`.
ENGINES = pytest.mark.parametrize("engine", ["lite", "server"], indirect=True)
# .ci/run sets this so that a server that cannot start fails the run instead of skipping.
SERVER_REQUIRED = os.environ.get("MILVUS_MEMORY_TEST_SERVER") == "required"
# Run a module's tests with the history in SQLite and in PostgreSQL: `pytestmark = [..., HISTORIES]`.
HISTORIES = pytest.mark.parametrize("history", ["sqlite", "postgres"], indirect=True)
# Both at once, without the pair nobody needs twice: Lite / SQLite, server / SQLite, Lite / PostgreSQL.
ENGINES_AND_HISTORIES = pytest.mark.parametrize(
    ("engine", "history"), [("lite", "sqlite"), ("server", "sqlite"), ("lite", "postgres")], indirect=True
)
# .ci/run sets this so that a PostgreSQL that cannot start fails the run instead of skipping.
POSTGRES_REQUIRED = os.environ.get("MILVUS_MEMORY_TEST_POSTGRES") == "required"


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


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStandalone]:
    """A Milvus 2.3.5 standalone with authorization on, on free ports, killed by process group."""
    reason = unavailable_reason()
    if reason is not None:
        if SERVER_REQUIRED:
            pytest.fail(f"Milvus server tests are required but cannot run: {reason}")
        pytest.skip(reason)
    server = MilvusStandalone(tmp_path_factory.mktemp("milvus-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free port, 127.0.0.1 only, in a temp dir; killed at the end."""
    reason = postgres_unavailable()
    if reason is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(f"PostgreSQL tests are required but cannot run: {reason}")
        pytest.skip(reason)
    # Not under pytest's temp root: that is private to the test user, and the server runs as `postgres`.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="memory-test-postgres-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def history(request: pytest.FixtureRequest) -> str | None:
    """None: the SQLite file (the default); with `HISTORIES`, also a fresh PostgreSQL database's URL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "lite")


def server_settings(server: MilvusStandalone, data_dir: Path, **extra: Any) -> Settings:
    """Settings for a fresh collection on the test server (history stays in the temp dir)."""
    extra.setdefault("collection", f"t_{uuid.uuid4().hex}")
    return make_settings(data_dir, milvus_uri=server.uri, milvus_token=server.token, **extra)


def drop_collection(server: MilvusStandalone, name: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.uri, token=server.token, timeout=10, dedicated=True)
    try:
        client.drop_collection(name, timeout=30)
    finally:
        client.close()


@pytest.fixture
def settings(tmp_path: Path, engine: str, history: str | None, request: pytest.FixtureRequest) -> Iterator[Settings]:
    extra: dict[str, Any] = {"history_url": history} if history else {}
    if engine == "lite":
        yield make_settings(tmp_path / "data", **extra)
        return
    server: MilvusStandalone = request.getfixturevalue("milvus_server")
    s = server_settings(server, tmp_path / "data", **extra)
    yield s
    drop_collection(server, s.collection)


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


@pytest.fixture
def openai_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """An OpenAI-compatible API on 127.0.0.1 that `openai:` embedders of this process (and of the
    processes it starts) reach; its embeddings have 32 dimensions unless a request asks for others
    (set `dims` for another default)."""
    with FakeOpenAI(dims=32).running() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        yield server
