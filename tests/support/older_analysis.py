"""Memories as a release of keyword analysis 1 stored them (a memory's own words once), with no
record of the analysis: for the tests of `doctor` and of the start-up check that find them."""

from __future__ import annotations

import pytest

from milvus_memory_mcp import keywords
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

CONVERSATION = [
    {"role": "user", "content": "We adopted a puppy last week."},
    {"role": "assistant", "content": "What did you name the puppy?"},
    {"role": "user", "content": "Biscuit, after my favourite snack."},
]


async def write_under_analysis_1(
    settings: Settings, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch, user: str = "u"
) -> set[str]:
    """A conversation and a fact stored under analysis 1; the ids that differ now (the
    conversation's: the fact, with no context, has the same words in both analyses)."""
    with monkeypatch.context() as older:
        older.setattr(keywords, "OWN_WEIGHT", 1)
        async with MemoryService(settings, embedder=embedder) as svc:
            said = {r.id for r in (await svc.add(CONVERSATION, Scope(user))).results}
            await svc.add("Prefers tea over coffee", Scope(user))
    return said
