"""`reembed` to the same model with other dimensions (OpenAI's text-embedding-3 models take a
`dimensions`): the embeddings cached for the old size are not the new one's. Every reader of the
cache (the reembed's copy, restore, reconcile, export, the search index at start, `as_of`) takes
only vectors of the size in use (real Milvus Lite and SQLite; the API is the fake)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pytest

from milvus_memory_mcp.core.transfer import export
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from tests.conftest import make_settings
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.anyio
MODEL = "openai:text-embedding-3-small"
ALICE = Scope("alice")


@pytest.fixture
def fake(openai_api: FakeOpenAI) -> FakeOpenAI:
    openai_api.dims = 64
    return openai_api


async def test_reembed_to_the_same_model_with_fewer_dimensions_switches_and_serves(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path / "data", embedder=MODEL, embedding_dims=64)
    async with MemoryService(settings) as svc:
        ids = [(await svc.add(f"Fact {i}: likes topic {i}", ALICE, infer=False)).results[0].id for i in range(6)]
        await svc.update(ids[0], "Fact 0: plays squash on Sundays")  # its first text stays cached at 64
        before = datetime.now(timezone.utc).isoformat()
        steps = []
        while not steps or not steps[-1]["switched"]:
            steps.append(await svc.reembed_step(MODEL, 32, 4))
        assert (steps[-1]["model"], steps[-1]["dimensions"]) == (MODEL, 32)
        stored = await svc.vectors.vectors_of(ids)
        assert {len(v) for v in stored.values()} == {32}
        restored = await svc.restore(ids[0])  # back to its first text, whose cached vector is 64 long
        assert restored.memory == "Fact 0: likes topic 0"
        assert len((await svc.vectors.vectors_of([ids[0]]))[ids[0]]) == 32
        assert (await svc.search("Fact 0: likes topic 0", ALICE)).results[0].id == ids[0]
        past = (await svc.search("Fact 0: plays squash on Sundays", ALICE, as_of=before)).results
        assert past[0].id == ids[0]
        out = StringIO()
        await export(svc.history, svc.embedder, None, out, with_vectors=True)
        lines = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
        assert {len(line["vector"]) for line in lines} == {32}
    async with MemoryService(settings.model_copy(update={"embedding_dims": 32})) as svc:
        hits = (await svc.search("Fact 3: likes topic 3", ALICE)).results
        assert hits[0].id == ids[3]
        assert (await svc.add("Fact 6: likes topic 6", ALICE, infer=False)).results
