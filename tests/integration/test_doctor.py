"""`milvus-memory-mcp doctor`: finds every kind of disagreement between the stores and repairs it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from ..conftest import make_settings
from ..support.older_analysis import write_under_analysis_1
from ..support.postgres_server import PostgresServer
from ..support.processes import run_doctor

pytestmark = pytest.mark.anyio


async def diverge(settings: Settings, embedder: LocalEmbedder) -> dict[str, str]:
    """Stores that disagree in every way the doctor knows: missing, extra, stale text, foreign scope."""
    async with MemoryService(settings, embedder=embedder) as svc:
        ids = {}
        for name in ["missing", "stale", "moved", "extra", "fine"]:
            ids[name] = (await svc.add(f"The {name} memory", Scope("u"))).results[0].id
        records = await svc.history.get_many(list(ids.values()))
        [vector] = await embedder.embed(["something else"])
        await svc.vectors.delete([ids["missing"]])
        stale = records[ids["stale"]].updated(memory="An old text", hash="0" * 32)
        moved = records[ids["moved"]].updated(user_id="someone-else")
        await svc.vectors.upsert([(stale, vector), (moved, vector)])
        await svc.delete(ids["extra"])
        await svc.vectors.upsert([(records[ids["extra"]], vector)])  # deleted in SQLite, back in Milvus
        await svc.vectors.flush()
    return ids


async def test_doctor_reports_each_difference_and_repair_makes_the_stores_agree(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    ids = await diverge(settings, local_embedder)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        report = await doctor.check(svc)
        assert report.missing == [ids["missing"]]
        assert report.extra == [ids["extra"]]
        assert set(report.differing) == {ids["stale"], ids["moved"]}
        assert "hash" in report.differing[ids["stale"]]
        assert report.differing[ids["moved"]] == ["user_id"]
        assert not report.clean and "The stores disagree." in report.lines()
        await doctor.repair(svc, report)
        assert (await doctor.check(svc)).clean
        hits = (await svc.search("The stale memory", Scope("u"), limit=1)).results
        assert hits[0].memory == "The stale memory" and hits[0].score > 0.9  # re-embedded from SQLite
        assert (await svc.search("memory", Scope("someone-else"))).results == []


async def test_doctor_command_exits_nonzero_until_repaired(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    ids = await diverge(make_settings(tmp_path), local_embedder)
    checked = run_doctor(tmp_path)
    assert checked.returncode == 1, checked.stderr
    assert f"1 missing from the vector store: {ids['missing']}" in checked.stdout
    assert "The stores disagree." in checked.stdout
    repaired = run_doctor(tmp_path, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.strip().endswith("The stores agree.")
    again = run_doctor(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"History (SQLite at {tmp_path / 'history.db'}): 4 live memories; vector store: 4 rows." in again.stdout


async def test_doctor_names_the_postgresql_history_it_checks_and_repairs_from(
    tmp_path: Path, local_embedder: LocalEmbedder, postgres_server: PostgresServer
) -> None:
    secret = "S3cr3t-Lk4"
    url = f"{postgres_server.new_database()}?password={secret}"  # trust authentication: accepted, not checked
    settings = make_settings(tmp_path, history_url=url)
    ids = await diverge(settings, local_embedder)
    out = io.StringIO()
    assert await doctor.run(settings, fix=True, out=out) == 0
    text = out.getvalue()
    shown = url.replace(secret, "***")
    assert f"History (PostgreSQL at {shown}): 4 live memories; vector store: 4 rows." in text
    assert f"1 in the vector store but not live in PostgreSQL: {ids['extra']}" in text
    assert "Repairing 4 memory id(s) from PostgreSQL's record..." in text
    assert text.strip().endswith("The stores agree.")
    assert "SQLite" not in text and secret not in text


async def test_doctor_reports_unapplied_changes_without_applying_them(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        added = (await svc.add("Pending fact", Scope("u"))).results[0]
        await svc.flush()
        # Under the write lock, so that a background flush still under way cannot report the test's
        # delete durable after it and clear the mark inserted below (seen once under load).
        async with svc.write_lock:
            await svc.vectors.delete([added.id])  # as if a crash came after the commit, before Milvus
            await svc.vectors.flush()
            svc.vectors.take_durable()  # the test's own write: its durability is not the service's to settle
            await svc.history._run(
                lambda conn: conn.execute("INSERT INTO pending VALUES (?, ?)", (settings.collection, added.id))
            )
    async with MemoryService(settings, embedder=local_embedder) as svc:
        report = await doctor.check(svc)
        assert report.pending == [added.id] and report.missing == [added.id]
        assert await svc.vectors.ids() == []  # checking changed nothing


@pytest.mark.parametrize("search_index", [True, False], ids=["search-index", "lite-bm25"])
async def test_doctor_finds_keywords_an_older_analysis_wrote_and_repair_rewrites_them(
    tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch, search_index: bool
) -> None:
    settings = make_settings(tmp_path, search_index=search_index)
    said = await write_under_analysis_1(settings, local_embedder, monkeypatch)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        report = await doctor.check(svc)
        assert report.differing == {i: [doctor.STALE_KEYWORDS] for i in said}
        assert not report.agree and "The stores disagree." in report.lines()
    checked = run_doctor(tmp_path)
    assert checked.returncode == 1 and doctor.STALE_KEYWORDS in checked.stdout, checked.stdout + checked.stderr
    repaired = run_doctor(tmp_path, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    async with MemoryService(settings, embedder=local_embedder) as svc:
        assert (await doctor.check(svc)).clean  # each field is now what this release writes


def test_doctor_on_an_unusable_data_dir_exits_2_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = run_doctor(tmp_path / "a-file" / "data")
    assert result.returncode == 2
    assert "Not a directory" in result.stderr and "MEMORY_DATA_DIR" in result.stderr
