"""The background flusher: one `idle` call to the store once writes pause, none between flushes of a burst."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp.core import writes
from milvus_memory_mcp.history import SQLiteHistory
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.stores.memory import InMemoryStore

from ..conftest import make_settings
from ..support.fakes import HashEmbedder

pytestmark = pytest.mark.anyio


class Recording(InMemoryStore):
    """The in-package store (durable only after a flush, like Lite), recording flushes and idles."""

    def __init__(self, history: SQLiteHistory) -> None:
        super().__init__(history)
        self.calls: list[str] = []

    async def flush(self) -> None:
        self.calls.append("flush")
        await super().flush()

    async def idle(self) -> None:
        self.calls.append("idle")


async def test_the_store_hears_idle_once_after_the_last_flush_of_a_burst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "IDLE_AFTER", 0.4)
    settings = make_settings(tmp_path)  # flush_delay 0.05
    history = SQLiteHistory(settings.resolved_history_path, settings.collection)
    store = Recording(history)
    async with MemoryService(settings, embedder=HashEmbedder(), vectors=store, history=history) as service:  # type: ignore[arg-type]
        for i in range(3):  # a burst: each write asks for a flush within IDLE_AFTER of the last one
            await service.add(f"fact number {i}", Scope("u"), infer=False)
            await anyio.sleep(0.15)
        assert "idle" not in store.calls
        with anyio.fail_after(5):
            while "idle" not in store.calls:
                await anyio.sleep(0.05)
        assert store.calls[-1] == "idle" and store.calls.count("idle") == 1
        assert await history.pending_ids() == []  # flushed before
        await service.add("a later fact", Scope("u"), infer=False)
        with anyio.fail_after(5):
            while store.calls.count("idle") < 2:
                await anyio.sleep(0.05)
        assert store.calls[-2:] == ["flush", "idle"]
