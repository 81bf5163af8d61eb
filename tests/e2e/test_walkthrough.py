"""The reference walk-through (server/demo.py), end to end through an MCP client, and the demo command."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from ..conftest import ENGINES, call

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@ENGINES
async def test_reference_walkthrough(client: Client) -> None:
    # 1. add
    out = await call(
        client,
        "add_memory",
        messages="I am working on improving my tennis skills.",
        user_id="alice",
        metadata={"category": "hobbies"},
    )
    [added] = out["results"]
    assert added["event"] == "ADD" and added["memory"] == "I am working on improving my tennis skills."
    tennis = added["id"]
    # 2. update
    await call(client, "update_memory", memory_id=tennis, data="Likes to play tennis on weekends")
    # 3. list
    [item] = (await call(client, "list_memories", user_id="alice", verbose=True))["results"]
    assert {"id", "memory", "hash", "metadata", "created_at", "updated_at", "user_id"} <= set(item)
    assert item["memory"] == "Likes to play tennis on weekends"
    assert item["hash"] == hashlib.md5(b"Likes to play tennis on weekends").hexdigest()
    assert item["metadata"] == {"category": "hobbies"} and item["user_id"] == "alice"
    # 4. history
    events = (await call(client, "memory_history", memory_id=tennis))["events"]
    assert [(e["event"], e.get("old_memory"), e["new_memory"]) for e in events] == [
        ("ADD", None, "I am working on improving my tennis skills."),
        ("UPDATE", "I am working on improving my tennis skills.", "Likes to play tennis on weekends"),
    ]
    # 5. a second memory, then search
    await call(
        client,
        "add_memory",
        messages="I have a linear algebra midterm exam on November 20",
        user_id="alice",
        metadata={"category": "task"},
    )
    hits = (await call(client, "search_memories", query="What are Alice's hobbies", user_id="alice"))["results"]
    assert hits[0]["id"] == tennis and "score" in hits[0]
    # 6. delete
    await call(client, "delete_memory", memory_id=tennis)
    remaining = (await call(client, "list_memories", user_id="alice"))["results"]
    assert [m["memory"] for m in remaining] == ["I have a linear algebra midterm exam on November 20"]
    assert (await call(client, "memory_history", memory_id=tennis))["events"][-1]["event"] == "DELETE"


def test_demo_command_replays_the_walkthrough_through_stdio(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env["MEMORY_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "milvus_memory_mcp", "demo"], env=env, cwd=str(ROOT), capture_output=True, timeout=180
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for step in ["1. Remember a hobby", "2. Correct it", "3. List", "4. Its history", "5b. Search", "6c. History"]:
        assert step in out
    assert '"event": "DELETE"' in out and "Likes to play tennis on weekends" in out
