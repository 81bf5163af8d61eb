"""A connection to PostgreSQL lost while it answers COMMIT: the write is recorded, but the call sees
a failure. It must not be told "Nothing was changed", and the vector store must come in line with
what was recorded at the next write, without a restart (real PostgreSQL behind a TCP relay that
cuts the connection once the COMMIT's answer comes back, real Milvus Lite)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from tests.conftest import make_settings
from tests.support.fakes import HashEmbedder
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.anyio
ALICE = Scope("alice")


class CommitCutter:
    """A TCP relay to PostgreSQL; once `armed`, the next COMMIT goes through, and when PostgreSQL
    answers it both connections are cut before the answer reaches the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.cuts = 0
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CommitCutter]:
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        committing = asyncio.Event()

        async def up() -> None:
            while data := await client_r.read(65536):
                if self.armed and data[:1] == b"Q" and b"COMMIT" in data.upper():
                    self.armed = False
                    committing.set()
                server_w.write(data)
                await server_w.drain()

        async def down() -> None:
            while data := await server_r.read(65536):
                if committing.is_set():  # PostgreSQL answered the COMMIT: it is durable
                    self.cuts += 1
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, server_w):
            writer.transport.abort()


async def test_a_commit_whose_answer_is_lost_is_not_reported_as_nothing_changed(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.new_database().rsplit("/", 1)[1]
    async with CommitCutter(postgres_server.port).running() as relay:
        url = f"postgresql://postgres@127.0.0.1:{relay.port}/{database}"
        async with MemoryService(make_settings(tmp_path, history_url=url), embedder=HashEmbedder()) as svc:
            memory_id = (await svc.add("Likes green tea", ALICE, infer=False)).results[0].id
            relay.armed = True
            with pytest.raises(BackendError) as failed:
                await svc.delete(memory_id)
            assert relay.cuts == 1
            assert "Nothing was changed" not in str(failed.value)
            assert "not known whether the change was recorded" in str(failed.value)
            # It was recorded, and the next write brings the vector store in line.
            assert not (await svc.delete(memory_id)).deleted
            coffee = (await svc.add("Drinks coffee", ALICE, infer=False)).results[0].id
            assert "Likes green tea" not in [h.memory for h in (await svc.search("green tea", ALICE)).results]
            await svc.flush()  # on Lite, marks are cleared by the flush that made the writes durable
            assert await svc.vectors.ids() == [coffee] == await svc.history.live_ids()
            assert await svc.history.pending_ids() == []
