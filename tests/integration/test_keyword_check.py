"""At start-up the server checks the keyword text its collection ranks by, once per keyword analysis.

Memories written under an older analysis (`keywords.ANALYSIS`) get a warning naming how many and
`doctor --repair`; once none is left, the analysis is recorded in `store_state` and later starts
skip the check. Where the search index ranks (Lite's default) the stored text ranks nothing, and
the collection is not read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from milvus_memory_mcp import doctor, keywords
from milvus_memory_mcp.core import keyword_check
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import make_settings
from ..support.older_analysis import CONVERSATION, write_under_analysis_1

pytestmark = pytest.mark.anyio

WARNED = "keep keyword text an older keyword analysis wrote"


async def start_and_wait(settings: Settings, embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture) -> str | None:
    """Start a service as a server does (warm-up after the handshake) and wait for its check to end:
    the analysis recorded, or the warning. Returns what `store_state` records."""
    caplog.clear()
    async with MemoryService(settings, embedder=embedder) as svc:
        svc.warm_up()
        with anyio.fail_after(30):
            while not svc.is_ready:
                await anyio.sleep(0.05)
            while WARNED not in caplog.text and keyword_check.KEY not in await svc.history.store_state():
                await anyio.sleep(0.05)
        return (await svc.history.store_state()).get(keyword_check.KEY)


async def test_start_up_warns_of_keyword_text_an_older_analysis_wrote_until_doctor_repairs_it(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="milvus_memory_mcp.core.keyword_check")
    settings = make_settings(tmp_path, search_index=False)  # Lite's BM25 field ranks, as a 2.5+ server's
    stale = len(await write_under_analysis_1(settings, local_embedder, monkeypatch))
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert keyword_check.KEY not in await svc.history.store_state()  # no start-up check ran yet

    assert await start_and_wait(settings, local_embedder, caplog) is None
    assert f"{stale} memories {WARNED}" in caplog.text and "doctor --repair" in caplog.text
    assert await start_and_wait(settings, local_embedder, caplog) is None  # warned again: nothing recorded

    async with MemoryService(settings, embedder=local_embedder) as svc:
        await doctor.repair(svc, await doctor.check(svc))
    assert await start_and_wait(settings, local_embedder, caplog) == str(keywords.ANALYSIS)
    assert WARNED not in caplog.text

    await write_under_analysis_1(settings, local_embedder, monkeypatch, "v")  # recorded: later starts skip it
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.ready()
        assert await keyword_check.check_keyword_text(svc.history, svc.vectors, svc.write_lock) is None
        assert (await doctor.check(svc)).differing  # the skipped check would have found these


async def test_a_new_data_dir_records_its_keyword_analysis_at_start_up(
    tmp_path: Path, local_embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, search_index=False)
    assert await start_and_wait(settings, local_embedder, caplog) == str(keywords.ANALYSIS)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.add(CONVERSATION, Scope("u"))
        await svc.history.set_store_state({keyword_check.KEY: None})  # as a data dir made before the record
    assert await start_and_wait(settings, local_embedder, caplog) == str(keywords.ANALYSIS)
    assert WARNED not in caplog.text


async def test_where_the_search_index_ranks_start_up_does_not_read_the_collection(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="milvus_memory_mcp.core.keyword_check")
    settings = make_settings(tmp_path)  # the default: the index, rebuilt for a new analysis, ranks
    await write_under_analysis_1(settings, local_embedder, monkeypatch)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        svc.warm_up()
        with anyio.fail_after(30):
            while not svc.is_ready:
                await anyio.sleep(0.05)
        assert await keyword_check.check_keyword_text(svc.history, svc.vectors, svc.write_lock) is None
        assert keyword_check.KEY not in await svc.history.store_state()  # turned off later, it is checked then
        assert WARNED not in caplog.text
        assert (await doctor.check(svc)).differing  # doctor still reports the unused field
