"""`milvus-memory-mcp doctor`: check that Milvus agrees with the history's record, and repair it.

The history (SQLite, or PostgreSQL with MEMORY_HISTORY_URL) is the record (docs/ARCHITECTURE.md, "The
write protocol"), and the report names the one in use: every live memory there must be in
the vector store with the same text hash, scope, metadata and update time (and, where the
collection keeps one, the keyword text this release's analysis makes of it: a Milvus 2.5+ or Lite
collection's BM25 field written by an older release differs in "keywords"), and the vector store
must hold nothing else. `--repair` upserts what is missing or stale (with the stored embeddings,
else re-embedded) and deletes the extras, through the same `MemoryService` reconciliation the
write protocol uses. On a shared PostgreSQL history it runs from any machine with the replicas'
settings while they serve: what differs is read again, and repaired, under the cluster write lock.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TextIO

from milvus_memory_mcp.errors import MemoryServiceError
from milvus_memory_mcp.history.postgres.url import redacted
from milvus_memory_mcp.records import SCOPE_FIELDS, MemoryRecord, text_hash
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.validation import storage_problem

logger = logging.getLogger(__name__)
READ_CHUNK = 1000
COMPARED = ("hash", *SCOPE_FIELDS, "metadata", "updated_at")
STALE_KEYWORDS = "keywords (written by an older keyword analysis)"
SHOWN = 20


def history_in_use(settings: Settings) -> tuple[str, str]:
    """The history store the settings name, and where it is (a URL as `redacted` shows it)."""
    if settings.history_url:
        return "PostgreSQL", redacted(settings.history_url)
    return "SQLite", str(settings.resolved_history_path)


@dataclass
class Report:
    records: int = 0  # live memories in the history
    rows: int = 0  # rows in the vector store
    history: str = "SQLite"  # the history store in use: SQLite or PostgreSQL
    where: str = ""  # its file or its URL (redacted)
    missing: list[str] = field(default_factory=list)  # live in the history, absent from the vector store
    extra: list[str] = field(default_factory=list)  # in the vector store, not live in the history
    differing: dict[str, list[str]] = field(default_factory=dict)  # id -> fields that differ
    pending: list[str] = field(default_factory=list)  # changes recorded but not marked applied
    refused: dict[str, str] = field(default_factory=dict)  # live in the history, refused by the vector store: id -> why

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.pending or self.refused)

    @property
    def unexplained(self) -> set[str]:
        """Ids whose difference no pending write explains (a pending one is applied at the next start)."""
        return {*self.missing, *self.extra, *self.differing} - set(self.pending)

    @property
    def agree(self) -> bool:
        """The stores agree, or differ only by pending writes that the next start applies."""
        return not self.unexplained and not self.refused

    @property
    def to_repair(self) -> list[str]:
        return sorted({*self.missing, *self.extra, *self.differing, *self.pending})

    def lines(self) -> list[str]:
        history = f"{self.history} at {self.where}" if self.where else self.history
        out = [f"History ({history}): {self.records} live memories; vector store: {self.rows} rows."]
        unexplained = self.unexplained
        for label, ids in (
            ("missing from the vector store", [i for i in self.missing if i in unexplained]),
            (f"in the vector store but not live in {self.history}", [i for i in self.extra if i in unexplained]),
        ):
            if ids:
                out.append(f"{len(ids)} {label}: {_sample(ids)}")
        if differing := {i: f for i, f in self.differing.items() if i in unexplained}:
            out.append(f"{len(differing)} differing:")
            for memory_id, fields in sorted(differing.items())[:SHOWN]:
                out.append(f"  {memory_id}: {', '.join(fields)}")
        if self.refused:
            out.append(
                f"{len(self.refused)} refused by the vector store (kept in {self.history}, pending; update their "
                "metadata or delete them):"
            )
            for memory_id, why in sorted(self.refused.items())[:SHOWN]:
                out.append(f"  {memory_id}: {why}")
        if waiting := [i for i in self.pending if i not in self.refused]:
            out.append(
                f"{len(waiting)} pending write(s), recorded in {self.history} and not yet confirmed in the vector "
                f"store (as after a stop right after a write; the next start applies them, or --repair now): "
                f"{_sample(waiting)}"
            )
        if self.clean:
            out.append("The stores agree.")
        elif self.agree:
            out.append("The stores agree, except for the pending writes above.")
        else:
            out.append("The stores disagree.")
        return out


def _sample(ids: list[str]) -> str:
    shown = ", ".join(sorted(ids)[:SHOWN])
    return shown + (f" (and {len(ids) - SHOWN} more)" if len(ids) > SHOWN else "")


def _differences(record: MemoryRecord, row: MemoryRecord) -> list[str]:
    fields = [name for name in COMPARED if getattr(record, name) != getattr(row, name)]
    if text_hash(row.memory) != row.hash:
        fields.append("memory text (does not match its hash)")
    elif row.memory != record.memory and "hash" not in fields:
        fields.append("memory text")
    return fields


async def check(service: MemoryService) -> Report:
    """Compare the two stores; changes nothing."""
    await service.ready(apply_pending=False)
    await service.flush()  # settles this process's own recent writes; pending marks of a past run stay
    records = {r.id: r for r in await service.history.list_live(None, None)}
    rows = await _rows(service, await service.vectors.ids())
    stale = await _stale_keywords(service, records, rows)
    report = _compare(service, records, rows, await service.history.pending_ids(), stale)
    if suspects := sorted({*report.missing, *report.extra, *report.differing, *report.pending}):
        # Other processes (replicas on a shared history) may have written between the reads above:
        # read these ids again under the write lock, when no write is in flight anywhere.
        async with service.write_lock:
            now = {i: r for i, r in (await service.history.get_many(suspects)).items() if r.deleted_at is None}
            again = await _rows(service, suspects)
            stale_now = await _stale_keywords(service, now, again)
            pending = await service.history.pending_ids()
        for memory_id in suspects:
            records.pop(memory_id, None)
            rows.pop(memory_id, None)
        records.update(now)
        rows.update(again)
        stale = (stale - set(suspects)) | stale_now
        report = _compare(service, records, rows, pending, stale)
    return report


async def _rows(service: MemoryService, ids: list[str]) -> dict[str, MemoryRecord]:
    rows: dict[str, MemoryRecord] = {}
    for start in range(0, len(ids), READ_CHUNK):
        rows.update((r.id, r) for r in await service.vectors.get(ids[start : start + READ_CHUNK]))
    return rows


async def _stale_keywords(
    service: MemoryService, records: dict[str, MemoryRecord], rows: dict[str, MemoryRecord]
) -> set[str]:
    """Ids of the memories in both stores whose stored keyword text an older analysis wrote."""
    both = [records[i] for i in sorted(records.keys() & rows.keys())]
    stale: set[str] = set()
    for start in range(0, len(both), READ_CHUNK):
        stale.update(await service.vectors.stale_keywords(both[start : start + READ_CHUNK]))
    return stale


def _compare(
    service: MemoryService,
    records: dict[str, MemoryRecord],
    rows: dict[str, MemoryRecord],
    pending: list[str],
    stale: set[str],
) -> Report:
    history, where = history_in_use(service.settings)
    report = Report(records=len(records), rows=len(rows), history=history, where=where, pending=sorted(pending))
    report.missing = sorted(records.keys() - rows.keys())
    report.extra = sorted(rows.keys() - records.keys())
    for memory_id in records.keys() & rows.keys():
        fields = _differences(records[memory_id], rows[memory_id])
        if memory_id in stale and not fields:  # another difference rewrites the row anyway
            fields = [STALE_KEYWORDS]
        if fields:
            report.differing[memory_id] = fields
    for memory_id in {*report.missing, *report.differing, *report.pending} & records.keys():
        why = service.vectors.refused.get(memory_id) or storage_problem(records[memory_id].metadata)
        if why:
            report.refused[memory_id] = why
    return report


async def repair(service: MemoryService, report: Report) -> None:
    """Make the vector store match the history for every id the report names."""
    if ids := report.to_repair:
        await service.resync(ids)
        await service.flush()


def _no_store(settings: Settings) -> str | None:
    """Why there is no store to check (opening one would create it empty, and find it consistent)."""
    if settings.history_url:
        return None  # a PostgreSQL history: its server says at open whether it is there
    history = settings.resolved_history_path
    if history.is_file():
        return None
    try:
        history.parent.stat()
        where = f"{history.parent} holds no history database ({history.name})"
    except OSError as e:
        where = f"{history.parent}: {e.strerror or e}"
    return (
        f"no memory store here ({where}). Give the data dir a server uses (--data-dir or MEMORY_DATA_DIR); "
        "nothing was created."
    )


async def run(settings: Settings, *, fix: bool, out: TextIO) -> int:
    """The command: 0 when the stores agree (after repair, with `fix`; pending writes alone count as
    agreeing), 1 when they don't, 2 on failure or when there is no store."""
    if problem := _no_store(settings):
        print(f"milvus-memory-mcp doctor: {problem}", file=sys.stderr)
        return 2
    try:
        async with MemoryService(settings) as service:
            report = await check(service)
            for line in report.lines():
                print(line, file=out)
            if report.clean or not fix:
                return 0 if report.agree else 1
            print(f"Repairing {len(report.to_repair)} memory id(s) from {report.history}'s record...", file=out)
            await repair(service, report)
            after = await check(service)
            for line in after.lines():
                print(line, file=out)
            return 0 if after.agree else 1
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp doctor: {e}", file=sys.stderr)
        return 2
