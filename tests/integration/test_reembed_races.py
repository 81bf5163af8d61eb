"""A write that embeds its text before `reembed` switches the embedder, and takes the write lock
after: it is stored with the new embedder's vector (on real Milvus Lite and SQLite), never the old
one's. With other dimensions the old vector broke the search index and, after a restart, the start;
with the same dimensions it was stored silently and searched as if the new model had made it.
The old embedder is the hashing test embedder, held up on the texts the test names; the new one an
OpenAI-compatible API (the fake)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp.core.transfer import to_json
from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.records import MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService
from tests.conftest import make_settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.fakes import HashEmbedder

pytestmark = pytest.mark.anyio
NEW = "openai:model-b"
ALICE = Scope("alice")
TEXT = "held up: plays squash on Sundays"


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    openai_api.dims = 64
    return openai_api


class HeldEmbedder(HashEmbedder):
    """The hashing embedder, held up on texts that start with "held up" until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = anyio.Event()
        self.release = anyio.Event()

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        if any(t.startswith("held up") for t in texts):
            self.holding.set()
            await self.release.wait()
        return await super().embed(texts, kind)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


async def switch_while_held(
    svc: MemoryService, old: HeldEmbedder, dims: int, write: Callable[[], Awaitable[str]]
) -> str:
    """Run `write` (which embeds a held text and returns the memory's id), switch the store to NEW
    while its embedding is held, then let it go on."""
    written: list[str] = []

    async def run() -> None:
        written.append(await write())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            await old.holding.wait()
        while not (await svc.reembed_step(NEW, dims, 50))["switched"]:
            pass
        old.release.set()
    assert svc.embedder.model_id == NEW
    return written[0]


async def by_update(svc: MemoryService, seeded: str) -> str:
    return (await svc.update(seeded, TEXT)).id


async def by_add(svc: MemoryService, seeded: str) -> str:
    return (await svc.add(TEXT, ALICE, infer=False)).results[0].id


async def by_restore(svc: MemoryService, seeded: str) -> str:
    return (await svc.restore(seeded)).id  # back to TEXT, its text before the last update


async def by_import(svc: MemoryService, seeded: str) -> str:
    record = MemoryRecord.new(TEXT, {}, ALICE)
    assert (await svc.import_batch([to_json(record, [], None)], "skip", None))["imported"] == 1
    return record.id


@pytest.mark.parametrize("write", [by_update, by_add, by_restore, by_import])
@pytest.mark.parametrize("dims", [64, 32], ids=["same-dims", "other-dims"])
async def test_a_write_embedded_before_the_switch_is_stored_with_the_new_embedders_vector(
    tmp_path: Path, fake: FakeOpenAI, write: Callable[[MemoryService, str], Awaitable[str]], dims: int
) -> None:
    fake.dims = dims
    settings = make_settings(tmp_path / "data")
    old = HeldEmbedder()
    async with MemoryService(settings, embedder=old) as svc:
        seeded = (await svc.add("Likes tennis and chess", ALICE, infer=False)).results[0].id
        if write is by_restore:
            old.release.set()
            await svc.update(seeded, TEXT)
            await svc.update(seeded, "Likes tennis and chess")
            await svc.history.prune_embeddings()  # so that the restore embeds TEXT again
            old.release = anyio.Event()
        memory_id = await switch_while_held(svc, old, dims, lambda: write(svc, seeded))
        [expected] = await svc.embedder.embed([TEXT])
        stored = await svc.vectors.vectors_of([memory_id])
        assert cosine(stored[memory_id], expected) > 0.999
        assert (await svc.search(TEXT, ALICE)).results[0].id == memory_id
    async with MemoryService(settings.model_copy(update={"embedder": NEW, "embedding_dims": dims})) as svc:
        hits = (await svc.search(TEXT, ALICE)).results
        assert hits[0].id == memory_id and hits[0].memory == TEXT
