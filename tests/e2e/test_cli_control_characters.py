"""Memories written by an agent may hold terminal control characters (ESC and BEL sequences that
erase lines, set the title or write the clipboard, C1 controls such as U+009B CSI): the owner's
commands, run as real subprocesses, print them escaped and visible, never raw, while `--json` and
`export` keep the exact text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, make_settings
from ..support.processes import run_cli

pytestmark = pytest.mark.anyio

HOSTILE = (
    "Likes green tea\x1b[2K\r\x1b[1A\x1b[2K"  # erase this line and the one above
    "\x1b]0;owned title\x07"  # set the window title
    "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: write the clipboard
    "\x9b31m red (C1 CSI)\x7f\x08\x85"  # C1 CSI, DEL, backspace, C1 NEL
    "\nsecond line\tafter a tab"
)
UPDATED = HOSTILE.replace("green", "black")
META = {"note": "x\x1b[31my\x9bz\x07"}
# Everything a terminal may act on, but the newline that ends each line of output.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


async def cli(data_dir: Path, *args: str) -> str:
    """`milvus-memory-mcp ARGS` as the owner runs it: its stdout, checked free of raw controls."""
    returncode, out, err = await run_cli(data_dir, *args, COLUMNS="400")
    assert returncode == 0, (args, out, err)
    assert not RAW_CONTROL.search(out), (args, out)
    return out


async def seed(data: Path, embedder: LocalEmbedder) -> str:
    """One memory with the hostile text, then updated (so its history holds two texts)."""
    async with MemoryService(make_settings(data), embedder=embedder) as service:
        async with Client(build_server(service)) as client:
            added = await call(client, "add_memory", messages=HOSTILE, user_id="alice", metadata=META, infer=False)
            mid = added["results"][0]["id"]
            await call(client, "update_memory", memory_id=mid, data=UPDATED)
    return mid


async def test_every_human_readable_output_shows_control_characters_escaped(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(240):
        mid = await seed(data, local_embedder)
        shown_text = "Likes black tea\\x1b[2K\\r\\x1b[1A\\x1b[2K\\x1b]0;owned title\\x07"

        listed = await cli(data, "list", "--user-id", "alice")
        assert len(listed.splitlines()) == 3, listed  # header, rule, one row: the newline did not break it
        row = listed.splitlines()[2]
        assert shown_text in row and "\\x9b31m red (C1 CSI)\\x7f\\x08\\x85\\nsecond line\\tafter a tab" in row

        found = await cli(data, "search", "black tea", "--user-id", "alice")
        assert len(found.splitlines()) == 3 and shown_text in found, found

        shown = await cli(data, "show", mid)
        lines = shown.splitlines()
        assert [line.split()[0] for line in lines] == ["id", "memory", "scope", "metadata", "created", "updated"]
        assert lines[1] == "memory    " + UPDATED.encode("unicode_escape").decode()
        assert lines[3] == 'metadata  {"note": "x\\u001b[31my\\u009bz\\u0007"}'  # JSON's own escapes

        history = await cli(data, "history", mid)
        assert len(history.splitlines()) == 5, history  # title, header, rule, ADD, UPDATE
        assert "Likes green tea\\x1b[2K" in history and shown_text in history

        assert "user=alice" in await cli(data, "stats")
        assert "deleted" in await cli(data, "delete", mid)
        restored = await cli(data, "restore", mid)
        assert restored.startswith("Restored.\n") and shown_text in restored


async def test_json_and_export_keep_the_exact_text(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    data = tmp_path / "data"
    with anyio.fail_after(240):
        mid = await seed(data, local_embedder)

        listed = json.loads(await cli(data, "list", "--user-id", "alice", "--json"))
        assert [m["memory"] for m in listed["results"]] == [UPDATED]
        shown = json.loads(await cli(data, "show", mid, "--json"))
        assert shown["memory"] == UPDATED and shown["metadata"] == META
        events = json.loads(await cli(data, "history", mid, "--json"))["events"]
        assert [(e.get("old_memory"), e["new_memory"]) for e in events] == [(None, HOSTILE), (HOSTILE, UPDATED)]

        def memories(text: str) -> list[dict[str, Any]]:
            return [json.loads(line) for line in text.splitlines()[1:]]

        exported = memories(await cli(data, "export"))
        assert [(m["memory"], m["metadata"]) for m in exported] == [(UPDATED, META)]
        assert [h["new_memory"] for h in exported[0]["history"]] == [HOSTILE, UPDATED]
        await cli(data, "export", "--output", str(tmp_path / "out.jsonl"))
        written = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
        assert not RAW_CONTROL.search(written) and memories(written) == exported
