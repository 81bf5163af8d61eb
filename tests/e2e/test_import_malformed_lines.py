"""`import` through the CLI: each malformed line (bad UTF-8, a lone surrogate, nesting too deep, an id
already on an earlier line, an event id a stored memory owns) is reported by its number and the
others are imported; with `--strict` nothing is; a header with odd counts is no crash."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import make_settings
from .test_export_import import cli

pytestmark = pytest.mark.anyio
WHEN = "2024-01-01T00:00:00+00:00"


def line(text: str, event_id: str | None = None) -> dict[str, Any]:
    event = {"id": event_id or str(uuid.uuid4()), "event": "ADD", "new_memory": text, "created_at": WHEN, "at": WHEN}
    return {
        "id": str(uuid.uuid4()),
        "memory": text,
        "user_id": "alice",
        "created_at": WHEN,
        "updated_at": WHEN,
        "history": [event],
    }


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


async def test_malformed_lines_are_reported_by_number_and_the_rest_imported(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        stored = (await svc.add("Drinks tea", Scope("bob"), infer=False)).results[0].id
        [stored_event] = (await svc.memory_history(stored)).events

    first, last = line("Keeps bees"), line("Sails on weekends")
    header = {"format": "milvus-memory-mcp", "version": 1, "embedder": "x", "counts": ["not", "a", "dict"]}
    latin1 = json.dumps(line("café crème"), ensure_ascii=False).encode("latin-1") + b"\n"
    body = [
        dumps(header),
        dumps(first),  # line 2
        dumps(line("Likes \ud800 chess")),  # 3: json.dumps escapes it as \ud800
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # 4
        latin1,  # 5
        dumps(line("Plays go") | {"id": first["id"]}),  # 6
        dumps(line("Drinks coffee", event_id=stored_event.id)),  # 7
        dumps(last),  # 8
    ]
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(b"".join(body))
    expected = {
        3: "memory text contains a lone UTF-16 surrogate",
        4: "nested too deeply",
        5: "not valid UTF-8 (byte ",
        6: f"memory id {first['id']} is on line 2 already",
    }

    out, err = await cli(settings.data_dir, "import", "--strict", str(dump), code=1)
    for number, message in expected.items():
        assert f"line {number}: " in err and message in err.split(f"line {number}: ")[1].splitlines()[0], err
    assert "Imported 0 memories" in out and "(nothing imported: --strict)" in out, out
    assert "Traceback" not in err, err

    out, err = await cli(settings.data_dir, "import", str(dump), code=1)
    expected[7] = f"history event {stored_event.id} belongs to another memory ({stored})"
    reported = [x for x in err.splitlines() if x.startswith(f"{dump}: line ")]
    assert [int(x.split("line ")[1].split(":")[0]) for x in reported] == sorted(expected), err
    for number, message in expected.items():
        assert message in err.split(f"line {number}: ")[1].splitlines()[0], err
    assert "Imported 2 memories" in out and "5 malformed line(s) skipped" in out, out

    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert sorted(m.memory for m in (await svc.list(Scope("alice"))).results) == ["Keeps bees", "Sails on weekends"]
        assert [e.id for e in (await svc.memory_history(stored)).events] == [stored_event.id]
