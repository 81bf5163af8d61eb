"""A tampered `list_memories` cursor, through a real MCP client on real Milvus Lite and SQLite: the
agent reads the clear "cursor is not valid" error (not "Error executing tool list_memories" and a
traceback), with and without as_of, and a real cursor still pages."""

from __future__ import annotations

import base64
import json

import pytest
from mcp import Client

from ..conftest import call, error_of

pytestmark = pytest.mark.anyio

CLEAR = "cursor is not valid: pass the next_cursor value from the previous page."


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


TAMPERED = {
    "int beyond 64 bits": cursor_of(json.dumps([2**70, "x"])),  # was OverflowError at SQLite's bind
    "deeply nested JSON": cursor_of("[" * 50000 + "]" * 50000),  # was RecursionError in json.loads
    "lone surrogate in the id": cursor_of('[1, "\\ud800"]'),  # was UnicodeEncodeError at SQLite's bind
}


@pytest.mark.parametrize("cursor", TAMPERED.values(), ids=TAMPERED.keys())
async def test_a_tampered_cursor_gets_the_clear_error(client: Client, cursor: str) -> None:
    await call(client, "add_memory", messages="Fact about zebras", user_id="alice")
    text = await error_of(client, "list_memories", user_id="alice", cursor=cursor)
    assert text.endswith(CLEAR), text
    text = await error_of(client, "list_memories", user_id="alice", cursor=cursor, as_of="2100-01-01T00:00:00Z")
    assert text.endswith(CLEAR), text


async def test_a_real_cursor_still_pages(client: Client) -> None:
    for fact in ("Fact about zebras", "Owns a red bicycle", "Speaks Portuguese"):
        await call(client, "add_memory", messages=fact, user_id="alice", infer=False)
    first = await call(client, "list_memories", user_id="alice", limit=2)
    rest = await call(client, "list_memories", user_id="alice", limit=2, cursor=first["next_cursor"])
    shown = [m["memory"] for m in first["results"] + rest["results"]]
    assert shown == ["Fact about zebras", "Owns a red bicycle", "Speaks Portuguese"]
    assert "next_cursor" not in rest
