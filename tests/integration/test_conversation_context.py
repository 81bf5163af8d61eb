"""Messages added together are a conversation: each stored message keeps the messages around it (the
two before it, the two after it) as its context, and keyword search matches a memory by its
context's words too.

"Three times a week; it keeps us on track." shares no word with "How often does John work out with
his family?"; the message it answered ("How often do you work out with your family?") does. Nor does
"Biscuit turned three today!" with "How old is her golden retriever?"; the reply to it ("Happy
birthday to your golden retriever!") does. The context is kept in the memory's metadata under a key
no caller can write or filter on, shown by no tool, and it survives an update, a restart (the index
rebuilt from SQLite), time travel, and an export and import.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from mcp import Client

from milvus_memory_mcp import index_file
from milvus_memory_mcp.core.keyword_evidence import bm25_over
from milvus_memory_mcp.core.transfer import export
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import (
    CONTEXT_AFTER_CHARS,
    CONTEXT_BEFORE_CHARS,
    CONTEXT_KEY,
    MemoryRecord,
    Scope,
    context_of,
)
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.milvus_schema import KEYWORD_FIELD, MAX_TEXT_BYTES, to_row

from ..conftest import ENGINES, HISTORIES, call, make_settings

pytestmark = pytest.mark.anyio

SCOPE = Scope(user_id="john")
QUESTION = "How often do you work out with your family?"
REPLY = "Three times a week; it keeps us on track."
ASKED = "How often does John work out with his family"
OTHERS = [
    "Went hiking with the kids at Mount Tam last weekend.",
    "Thinking about a family road trip to the coast.",
    "Started a new job as an assistant manager.",
]


async def add_conversation(service: MemoryService) -> str:
    """The distractors one by one, then the question and its reply as one conversation; the reply's id."""
    for text in OTHERS:
        await service.add(text, SCOPE, infer=False)
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": REPLY}]
    out = await service.add(messages, SCOPE, {"topic": "fitness"}, infer=False)
    return out.results[1].id


def keyword_mode(service: MemoryService) -> None:
    service.settings = service.settings.model_copy(update={"search_mode": "keyword"})


async def found(service: MemoryService, query: str = ASKED, **kwargs: object) -> list[str]:
    return [h.memory for h in (await service.search(query, SCOPE, limit=10, **kwargs)).results]  # type: ignore[arg-type]


@ENGINES
async def test_a_reply_is_found_by_the_words_of_the_message_it_answers(service: MemoryService) -> None:
    await add_conversation(service)
    assert REPLY in await found(service)  # hybrid, the default
    # the reply's own words still find it first; the question stays a memory of its own
    assert (await found(service, "on track"))[0] == REPLY
    keyword_mode(service)
    assert REPLY in await found(service)
    assert QUESTION in await found(service)


DINNER = [
    "Hey! Long time no talk.",
    "Busy week at work, but good.",
    "I finally tried that sushi place by the harbour last night, and it was worth the wait.",
    "Nice, glad you liked it.",
    "Talk later!",
]


@ENGINES
async def test_the_message_that_says_a_word_outranks_neighbours_holding_it_in_their_context(
    service: MemoryService,
) -> None:
    # The neighbours hold "sushi" in their context, and their words with it are fewer than the
    # middle message's (whose context is all four others): counted once, its own word lost to them.
    await service.add([{"role": "user", "content": m} for m in DINNER], SCOPE, infer=False)
    keyword_mode(service)
    hits = (await service.search("sushi", SCOPE, limit=5)).results
    assert hits[0].memory == DINNER[2]
    assert {h.memory for h in hits[1:]} <= {DINNER[0], DINNER[1], DINNER[3], DINNER[4]}


@ENGINES
async def test_a_message_added_alone_has_no_context(service: MemoryService) -> None:
    for text in [*OTHERS, QUESTION, REPLY]:
        await service.add(text, SCOPE, infer=False)
    keyword_mode(service)
    assert REPLY not in await found(service)


async def test_milvus_lites_own_bm25_indexes_the_context(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    # Without the search index, Milvus Lite answers keyword searches from the collection's BM25 field.
    settings = make_settings(tmp_path / "data", search_index=False, search_mode="keyword")
    async with MemoryService(settings, embedder=local_embedder) as service:
        await add_conversation(service)
        assert REPLY in await found(service)


def test_server_side_keyword_evidence_counts_the_context() -> None:
    # A Milvus server before 2.5 has no BM25: the product scores the dense candidates' texts.
    with_context = MemoryRecord.new(REPLY, {CONTEXT_KEY: QUESTION}, SCOPE)
    alone = MemoryRecord.new(REPLY, {}, SCOPE)
    other = MemoryRecord.new(OTHERS[1], {}, SCOPE)
    ranked = bm25_over(ASKED, [(alone, 0.5), (with_context, 0.5), (other, 0.5)], 10)
    assert [r.id for r, _ in ranked] == [with_context.id, other.id]


async def test_the_context_is_not_shown_and_callers_cannot_set_or_filter_it(service: MemoryService) -> None:
    reply_id = await add_conversation(service)
    stored = await service.history.get(reply_id)
    assert stored is not None and stored.metadata == {"topic": "fitness", CONTEXT_KEY: QUESTION}
    got = await service.get(reply_id)
    assert got.metadata == {"topic": "fitness"}
    listed = await service.list(SCOPE)
    assert all(CONTEXT_KEY not in m.metadata for m in listed.results)
    hits = (await service.search(ASKED, SCOPE)).results
    assert hits and all(CONTEXT_KEY not in h.metadata for h in hits)
    with pytest.raises(InvalidInput, match="metadata"):
        await service.add("Runs on Sundays.", SCOPE, {CONTEXT_KEY: "How often do you run?"}, infer=False)
    with pytest.raises(InvalidInput):
        await service.search(ASKED, SCOPE, filters_={CONTEXT_KEY: QUESTION})


@ENGINES
async def test_a_message_is_found_by_the_words_of_the_reply_to_it(service: MemoryService) -> None:
    for text in OTHERS:
        await service.add(text, SCOPE, infer=False)
    said = ["Biscuit turned three today!", "Happy birthday to your golden retriever!"]
    await service.add([{"role": "user", "content": t} for t in said], SCOPE, infer=False)
    keyword_mode(service)
    assert set((await found(service, "How old is his golden retriever"))[:2]) == set(said)


async def test_each_message_keeps_the_two_before_it_and_the_two_after_it(service: MemoryService) -> None:
    said = ["Did you go hiking?", "Yes, at Mount Tam.", "How was the view?", "Foggy but lovely."]
    out = await service.add([{"role": "user", "content": t} for t in said], SCOPE, infer=False)
    contexts = [context_of((await service.history.get(e.id)).metadata) for e in out.results]  # type: ignore[union-attr]
    assert contexts == [
        f"{said[1]} {said[2]}",
        f"{said[0]} {said[2]} {said[3]}",
        f"{said[0]} {said[1]} {said[3]}",
        f"{said[1]} {said[2]}",
    ]


async def test_long_messages_before_give_their_end_and_after_their_start(service: MemoryService) -> None:
    before = "x " * CONTEXT_BEFORE_CHARS + QUESTION
    after = "Great, keep it up! " + "y " * CONTEXT_AFTER_CHARS
    messages = [{"role": "user", "content": t} for t in (before, REPLY, after)]
    out = await service.add(messages, SCOPE, infer=False)
    stored = await service.history.get(out.results[1].id)
    assert stored is not None
    assert stored.metadata[CONTEXT_KEY] == f"{before[-CONTEXT_BEFORE_CHARS:]} {after[:CONTEXT_AFTER_CHARS]}"
    assert QUESTION in stored.metadata[CONTEXT_KEY] and "Great, keep it up!" in stored.metadata[CONTEXT_KEY]


@HISTORIES
async def test_the_context_survives_an_update_and_a_rebuilt_index(
    settings: Settings, local_embedder: LocalEmbedder
) -> None:
    async with MemoryService(settings, embedder=local_embedder) as service:
        reply_id = await add_conversation(service)
        await service.update(reply_id, "Four times a week; it keeps us on track.", {"topic": "health"})
        stored = await service.history.get(reply_id)
        assert stored is not None and stored.metadata == {"topic": "health", CONTEXT_KEY: QUESTION}
    history_path = settings.resolved_history_path
    index_file.remove(history_path.with_name(f"{history_path.name}.{settings.collection}.index"))
    async with MemoryService(settings.model_copy(update={"search_mode": "keyword"}), embedder=local_embedder) as again:
        assert "Four times a week; it keeps us on track." in await found(again)  # rebuilt from SQLite


async def test_time_travel_finds_a_reply_by_its_context(service: MemoryService) -> None:
    reply_id = await add_conversation(service)
    before = (await service.get(reply_id)).updated_at
    await service.update(reply_id, "Daily now.")
    keyword_mode(service)
    assert REPLY in await found(service, as_of=before)


async def test_export_and_import_keep_the_context(
    service: MemoryService, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    reply_id = await add_conversation(service)
    out = io.StringIO()
    await export(service.history, service.embedder, None, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    reply = next(line for line in lines[1:] if line["id"] == reply_id)
    assert reply["metadata"] == {"topic": "fitness"} and reply["context"] == QUESTION
    assert reply["history"][0]["context"] == QUESTION
    settings = make_settings(tmp_path / "other", search_mode="keyword")
    async with MemoryService(settings, embedder=local_embedder) as other:
        await other.import_batch(lines[1:], "skip", lines[0]["embedder"])
        assert REPLY in await found(other)
        stored = await other.history.get(reply_id)
        assert stored is not None and stored.metadata == {"topic": "fitness", CONTEXT_KEY: QUESTION}


def test_the_keyword_field_of_the_longest_memory_with_a_context_fits_milvus() -> None:
    text = "kiwi " * (MAX_TEXT_BYTES // 5)  # its analysed words are as long as itself
    record = MemoryRecord.new(text, {CONTEXT_KEY: "Which fruit do you like? " * 20}, SCOPE)
    words = to_row(record, [0.0], keywords=True)[KEYWORD_FIELD]
    assert len(words.encode()) <= MAX_TEXT_BYTES
    assert words.startswith("kiwi kiwi")


def test_a_memory_too_long_for_the_keyword_field_loses_its_repeated_words_before_its_context() -> None:
    text = "kiwi " * (MAX_TEXT_BYTES // 10)  # about half the field: its three copies do not fit
    record = MemoryRecord.new(text, {CONTEXT_KEY: "Which fruit do you like?"}, SCOPE)
    words = to_row(record, [0.0], keywords=True)[KEYWORD_FIELD].split()
    assert "fruit" in words and "like" in words
    assert words.count("kiwi") > MAX_TEXT_BYTES // 10  # the cut fell in the repeats


async def test_through_the_tools_a_conversation_is_searchable_and_its_context_unseen(client: Client) -> None:
    for text in OTHERS:
        await call(client, "add_memory", messages=text, user_id="john")
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": REPLY}]
    await call(client, "add_memory", messages=messages, user_id="john", infer=False)
    found = await call(client, "search_memories", query=ASKED, user_id="john", verbose=True)
    assert REPLY in [r["memory"] for r in found["results"]]
    assert CONTEXT_KEY not in json.dumps(found)
    listed = await call(client, "list_memories", user_id="john", verbose=True)
    assert len(listed["results"]) == 5 and CONTEXT_KEY not in json.dumps(listed)
