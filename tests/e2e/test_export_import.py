"""export / import round trip through the CLI as subprocesses: from a data dir under the local
model into empty ones under another embedder (the OpenAI-compatible fake server), idempotent,
with user ids remapped, and a truncated file reported by its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.embedders.openai import OpenAIEmbedder
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, make_settings
from ..support.fake_openai import FakeOpenAI
from ..support.processes import run_cli

pytestmark = pytest.mark.anyio


async def cli(data_dir: Path, *args: str, code: int = 0, env: dict[str, str] | None = None) -> tuple[str, str]:
    returncode, out, err = await run_cli(data_dir, *args, **(env or {}))
    assert returncode == code, (args, out, err)
    return out, err


async def snapshot(client: Client, user_id: str) -> list[dict[str, Any]]:
    """Each memory of the user with its history, as the tools show them."""
    items = (await call(client, "list_memories", user_id=user_id))["results"]
    for item in items:
        item["history"] = (await call(client, "memory_history", memory_id=item["id"]))["events"]
        for event in item["history"]:
            event["user_id"] = "<user>"
        item["user_id"] = "<user>"
    return items


async def test_export_then_import_under_another_embedder_round_trips(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    source = make_settings(tmp_path / "source")
    async with MemoryService(source, embedder=local_embedder) as svc, Client(build_server(svc)) as c:
        ids = []
        for text, meta in [("Plays tennis on Sundays", {"k": "sport"}), ("Allergic to peanuts", {"k": "health"})]:
            ids.append((await call(c, "add_memory", messages=text, user_id="alice", metadata=meta))["results"][0]["id"])
        await call(c, "add_memory", messages="Prefers aisle seats", user_id="alice")
        await call(c, "add_memory", messages="Works on billing", agent_id="coder")
        gone = (await call(c, "add_memory", messages="Lives in Lisbon", user_id="alice"))["results"][0]["id"]
        await call(c, "update_memory", memory_id=ids[0], data="Plays squash on Sundays", metadata={"k": "squash"})
        await call(c, "delete_memory", memory_id=gone)
        before = await snapshot(c, "alice")
        assert len(before) == 3

    dump = tmp_path / "dump.jsonl"
    out, _ = await cli(source.data_dir, "export", "--output", str(dump))
    assert "Exported 5 memories (7 history events)" in out
    lines = dump.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "milvus-memory-mcp" and header["version"] == 1
    assert header["embedder"] == local_embedder.model_id and header["counts"] == {"memories": 5, "events": 7}
    assert len(lines) == 6 and all("vector" not in json.loads(x) for x in lines[1:])
    only_agent, _ = await cli(source.data_dir, "export", "--agent-id", "coder")  # to stdout
    assert [json.loads(x)["memory"] for x in only_agent.splitlines()[1:]] == ["Works on billing"]
    with_vectors, _ = await cli(source.data_dir, "export", "--user-id", "alice", "--with-vectors")
    vectors = [json.loads(x).get("vector") for x in with_vectors.splitlines()[1:]]
    assert sum(v is not None and len(v) == 384 for v in vectors) == 3  # live ones; the deleted has none

    with FakeOpenAI(dims=64).running() as fake:
        openai_env = {
            "MEMORY_EMBEDDER": "openai:text-embedding-3-small",
            "MEMORY_EMBEDDING_DIMS": "64",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "k",
        }
        target = make_settings(tmp_path / "target")
        out, err = await cli(target.data_dir, "import", str(dump), env=openai_env)
        assert out == "Imported 5 memories, skipped 0 already present.\n", err
        again, _ = await cli(target.data_dir, "import", str(dump), "--json", env=openai_env)
        assert json.loads(again) == {"imported": 0, "skipped": 5, "malformed": []}
        remapped = make_settings(tmp_path / "remapped")
        await cli(remapped.data_dir, "import", str(dump), "--remap-user-id", "alice=carol", env=openai_env)

        other = OpenAIEmbedder("text-embedding-3-small", api_key="k", base_url=fake.base_url, dimensions=64)
        async with MemoryService(target, embedder=other) as svc, Client(build_server(svc)) as c:
            assert await snapshot(c, "alice") == before  # ids, texts, metadata, times, histories
            hits = (await call(c, "search_memories", query="peanuts", user_id="alice"))["results"]
            assert hits[0]["id"] == ids[1]
            assert (await call(c, "restore_memory", memory_id=gone))["memory"] == "Lives in Lisbon"
            assert [m["memory"] for m in (await call(c, "list_memories", agent_id="coder"))["results"]] == [
                "Works on billing"
            ]
        async with MemoryService(remapped, embedder=other) as svc, Client(build_server(svc)) as c:
            assert await snapshot(c, "carol") == before
            assert (await call(c, "list_memories", user_id="alice"))["results"] == []

        # a truncated file: the cut line is reported by its number, the rest imported
        cut = tmp_path / "cut.jsonl"
        cut.write_text(dump.read_text()[: len(dump.read_text()) - 40])
        broken = make_settings(tmp_path / "broken")
        out, err = await cli(broken.data_dir, "import", str(cut), "--strict", code=1, env=openai_env)
        assert f"{cut}: line 6: not valid JSON" in err and "nothing imported" in out
        assert "Imported 0 memories" in out
        out, err = await cli(broken.data_dir, "import", str(cut), code=1, env=openai_env)
        assert f"{cut}: line 6: not valid JSON" in err
        assert out.startswith("Imported 4 memories")
        not_export = tmp_path / "notes.txt"
        not_export.write_text("hello\n")
        _, err = await cli(broken.data_dir, "import", str(not_export), code=1, env=openai_env)
        assert "line 1" in err
