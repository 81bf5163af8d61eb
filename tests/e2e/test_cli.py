"""The owner's CLI, each command as a real subprocess, while a stdio server owns the data dir:
the CLI forwards to it (server/sharing.py) instead of failing on the lock."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from ..conftest import call
from ..support.processes import params, run_cli

pytestmark = pytest.mark.anyio


async def cli(data_dir: Path, *args: str, code: int = 0) -> str:
    """Run `milvus-memory-mcp ARGS` as a user would; its stdout (stderr checked for `code`)."""
    returncode, out, err = await run_cli(data_dir, *args, COLUMNS="200")
    assert returncode == code, (args, out, err)
    if code == 0:
        assert err == "", err  # the owner's commands log warnings only
    return out if code == 0 else err


async def cli_json(data_dir: Path, *args: str) -> Any:
    return json.loads(await cli(data_dir, *args, "--json"))


def owner_pid(data_dir: Path) -> int:
    return int(json.loads((data_dir / "owner.json").read_text())["pid"])


async def test_every_owner_command_forwards_to_the_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(240):
        async with Client(params(data), read_timeout_seconds=60) as server:
            add = await call(server, "add_memory", messages="Plays tennis on Sundays", user_id="alice")
            mid = add["results"][0]["id"]
            await call(server, "add_memory", messages="Allergic to peanuts", user_id="alice", metadata={"k": "health"})
            await call(server, "add_memory", messages="Works on the billing service", agent_id="coder")
            await call(server, "update_memory", memory_id=mid, data="Plays squash on Sundays")
            server_pid = owner_pid(data)
            assert server_pid != os.getpid()

            listed = await cli_json(data, "list", "--user-id", "alice")
            assert [m["memory"] for m in listed["results"]] == ["Plays squash on Sundays", "Allergic to peanuts"]
            table = await cli(data, "list", "--user-id", "alice")
            assert table.splitlines()[0].split() == ["id", "memory", "scope", "updated"]
            assert "Allergic to peanuts" in table and "user=alice" in table
            page = await cli_json(data, "list", "--user-id", "alice", "--limit", "1")
            assert len(page["results"]) == 1 and page["next_cursor"]
            assert "More: --cursor" in await cli(data, "list", "--user-id", "alice", "--limit", "1")
            filtered = await cli_json(data, "list", "--user-id", "alice", "--filters", '{"k": "health"}')
            assert [m["memory"] for m in filtered["results"]] == ["Allergic to peanuts"]

            found = await cli_json(data, "search", "peanut allergy", "--user-id", "alice", "--limit", "1")
            assert [h["memory"] for h in found["results"]] == ["Allergic to peanuts"]
            assert "Allergic to peanuts" in await cli(data, "search", "peanut allergy", "--user-id", "alice")

            shown = await cli_json(data, "show", mid)
            assert shown["memory"] == "Plays squash on Sundays"
            assert "memory    Plays squash on Sundays" in await cli(data, "show", mid)

            history = await cli_json(data, "history", mid)
            assert [e["event"] for e in history["events"]] == ["ADD", "UPDATE"]
            assert "UPDATE" in await cli(data, "history", mid)

            restored = await cli_json(data, "restore", mid)
            assert restored["memory"] == "Plays tennis on Sundays"
            first_event = history["events"][0]["id"]
            again = await cli(data, "restore", mid, history["events"][1]["id"])
            assert again.startswith("Restored.") and "Plays squash on Sundays" in again
            events = (await cli_json(data, "history", mid))["events"]
            assert [e["event"] for e in events] == ["ADD", "UPDATE", "RESTORE", "RESTORE"]
            assert events[2]["actor"] == "cli" and first_event in events[2]["reason"]

            assert "deleted" in await cli(data, "delete", mid)
            assert "No memory" in await cli(data, "show", mid, code=1)
            # the server sees what the CLI did: the same store
            assert "No memory" in str(await server.call_tool("get_memory", {"memory_id": mid}))
            await cli(data, "restore", mid)
            assert (await call(server, "get_memory", memory_id=mid))["memory"] == "Plays squash on Sundays"

            stats = await cli_json(data, "stats")
            assert stats["memories"] == 3 and stats["deleted"] == 0
            by_scope = {(s["user_id"], s["agent_id"]): s["live"] for s in stats["scopes"]}
            assert by_scope == {("alice", None): 2, (None, "coder"): 1}
            assert stats["embedder"]["model"] and stats["versions"]["schema"].startswith("0005")
            assert stats["store_bytes"]["history"] > 0 and stats["pending_writes"] >= 0
            text = await cli(data, "stats")
            assert "memories        3 live" in text and "agent=coder" in text

            assert "No memory" in await cli(data, "show", "00000000-0000-4000-8000-000000000000", code=1)
            assert "not a valid memory id" in await cli(data, "history", "nope", code=1)
            assert owner_pid(data) == server_pid  # the server owned the store throughout


async def test_without_a_server_the_cli_owns_the_data_dir_for_the_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(120):
        stats = await cli_json(data, "stats")
        assert stats["memories"] == 0
        assert "No memories." in await cli(data, "list", "--user-id", "alice")
        assert not (data / "owner.json").exists()  # given up on exit
        # a command refused at once (the model still starting) says why in one line: no SDK prefix,
        # no traceback from the model's process
        refused = await cli(data, "show", "not-a-uuid", code=1)
        assert refused.strip() == (
            "milvus-memory-mcp show: memory_id 'not-a-uuid' is not a valid memory id (expected a UUID)."
        ), refused


async def test_version_and_help_list_only_each_commands_own_options(tmp_path: Path) -> None:
    version = await cli(tmp_path, "--version")
    assert version.startswith("milvus-memory-mcp ")
    restore_help = await cli(tmp_path, "restore", "--help")
    assert "--data-dir" in restore_help and "--json" in restore_help
    assert "--embedder" not in restore_help and "--milvus-uri" not in restore_help
    list_help = await cli(tmp_path, "list", "--help")
    assert "--as-of" in list_help and "--cursor" in list_help and "--transport" not in list_help
    assert "--transport" in await cli(tmp_path, "serve", "--help")
    assert "--filters: is not JSON" in await cli(tmp_path, "list", "--filters", "{oops", code=2)
    deep = await cli(tmp_path, "list", "--filters", "[" * 5000 + "]" * 5000, code=2)
    assert "--filters: is nested 5000 levels deep (at most 64)" in deep and "Traceback" not in deep
