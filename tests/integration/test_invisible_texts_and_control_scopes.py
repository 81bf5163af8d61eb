"""Through a real MCP client on Milvus Lite: a text of invisible characters only is refused as empty
by every tool that takes a text (so it is never stored, nor the near-duplicate other invisible texts
were answered NONE against), and a scope value with a C1 control character is refused like C0 / DEL."""

from __future__ import annotations

import pytest
from mcp import Client

from ..conftest import call, error_of

pytestmark = pytest.mark.anyio

EMPTY = "is empty (it has no visible character)"
INVISIBLE = ["\u200b\u200b\ufeff", "\u0301\u0301", "\u00a0\u3000", "\u2060\u200d\U000e0041", "\u3164"]


async def test_invisible_texts_are_refused_as_empty_and_nothing_is_stored(client: Client) -> None:
    for text in INVISIBLE:
        assert EMPTY in await error_of(client, "add_memory", messages=text, user_id="u"), repr(text)
        assert EMPTY in await error_of(client, "add_memory", messages=text, user_id="u", infer=False)
    messages = [{"role": "user", "content": "Likes green tea"}, {"role": "assistant", "content": "\u200b"}]
    text = await error_of(client, "add_memory", messages=messages, user_id="u")
    assert f"messages[1].content {EMPTY}" in text
    assert (await call(client, "list_memories", user_id="u"))["results"] == []


async def test_a_visible_character_among_invisible_ones_is_stored(client: Client) -> None:
    added = await call(client, "add_memory", messages="\u200bLikes green tea\ufeff", user_id="u")
    assert [r["event"] for r in added["results"]] == ["ADD"]
    other = await call(client, "add_memory", messages="Plays the cello", user_id="u")
    assert [r["event"] for r in other["results"]] == ["ADD"]  # no near-duplicate of anything invisible


async def test_update_and_search_refuse_an_invisible_text_too(client: Client) -> None:
    added = await call(client, "add_memory", messages="Likes green tea", user_id="u")
    memory_id = added["results"][0]["id"]
    assert EMPTY in await error_of(client, "update_memory", memory_id=memory_id, data="\u200b\u0301")
    assert (await call(client, "get_memory", memory_id=memory_id))["memory"] == "Likes green tea"
    text = await error_of(client, "search_memories", query="\ufeff\u200b", user_id="u")
    assert f"The query {EMPTY}" in text


@pytest.mark.parametrize("char", ["\x85", "\x9b", "\x80", "\x9f", "\x7f", "\x1b"])
async def test_a_scope_value_with_a_control_character_is_refused(client: Client, char: str) -> None:
    for field in ("user_id", "agent_id", "run_id"):
        text = await error_of(client, "add_memory", messages="Likes green tea", **{field: f"a{char}b"})
        assert text.endswith(f"{field} contains a control character."), text
        text = await error_of(client, "list_memories", **{field: f"a{char}b"})
        assert text.endswith(f"{field} contains a control character."), text
    text = await error_of(client, "list_memories", filters={"user_id": f"a{char}b"})  # the scope named in filters
    assert text.endswith("user_id contains a control character."), text
