"""A forwarded reply over the old 16 MiB line limit: two real stdio processes on one data dir, the
second one's list_memories answered by the first (the owner) with a reply of ~20 MB."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, make_settings
from ..support.processes import params

pytestmark = pytest.mark.anyio
COUNT = 160
SIZE = 60_000  # bytes of text per memory


def big_text(rng: random.Random, n: int) -> str:
    return f"memory {n} " + "x" * (SIZE - 20) + f" {rng.random()}"


async def owner_pid(data: Path) -> int:
    with anyio.fail_after(60):
        while True:
            try:
                return int(json.loads((data / "owner.json").read_text())["pid"])
            except (OSError, ValueError):
                await anyio.sleep(0.1)


async def test_a_forwarded_list_of_large_memories_over_16_mib_arrives_whole(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    data = tmp_path / "data"
    rng = random.Random(7)
    texts = [big_text(rng, n) for n in range(COUNT)]
    async with MemoryService(make_settings(data, max_memory_bytes=65535), embedder=local_embedder) as svc:
        for start in range(0, COUNT, 80):  # one add stores each message as a memory
            batch = [{"role": "user", "content": t} for t in texts[start : start + 80]]
            assert len((await svc.add(batch, Scope("u"), infer=False)).results) == len(batch)
    env = {"MEMORY_MAX_MEMORY_BYTES": "65535"}
    async with Client(params(data, **env), read_timeout_seconds=120) as owner:
        assert (await call(owner, "search_memories", query="abc", user_id="u", limit=1))["results"]
        first = await owner_pid(data)
        async with Client(params(data, **env), read_timeout_seconds=120) as forwarding:
            await call(forwarding, "search_memories", query="abc", user_id="u", limit=1)
            assert await owner_pid(data) == first  # the second process forwards its calls
            result = await forwarding.call_tool("list_memories", {"user_id": "u", "limit": 1000})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            listed = result.structured_content["results"]
            assert len(result.model_dump_json(by_alias=True)) > 16 * 1024 * 1024  # the old line limit
            assert sorted(m["memory"] for m in listed) == sorted(texts)
