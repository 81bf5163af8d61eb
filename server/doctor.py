"""`milvus-memory-mcp doctor`: check that Milvus agrees with SQLite's record, and repair it.

SQLite is the record (docs/ARCHITECTURE.md, "The write protocol"): every live memory there must be in
the vector store with the same text hash, scope, metadata and update time, and the vector store
must hold nothing else. `--repair` upserts what is missing or stale (with the stored embeddings,
else re-embedded) and deletes the extras, through the same `MemoryService` reconciliation the
write protocol uses.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TextIO

from milvus_memory_mcp.errors import MemoryServiceError
from milvus_memory_mcp.records import SCOPE_FIELDS, MemoryRecord, text_hash
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

logger = logging.getLogger(__name__)
READ_CHUNK = 1000
COMPARED = ("hash", *SCOPE_FIELDS, "metadata", "updated_at")
SHOWN = 20


@dataclass
class Report:
    records: int = 0  # live memories in SQLite
    rows: int = 0  # rows in the vector store
    missing: list[str] = field(default_factory=list)  # live in SQLite, absent from the vector store
    extra: list[str] = field(default_factory=list)  # in the vector store, not live in SQLite
    differing: dict[str, list[str]] = field(default_factory=dict)  # id -> fields that differ
    pending: list[str] = field(default_factory=list)  # changes recorded but not marked applied

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.pending)

    @property
    def to_repair(self) -> list[str]:
        return sorted({*self.missing, *self.extra, *self.differing, *self.pending})

    def lines(self) -> list[str]:
        out = [f"SQLite: {self.records} live memories; vector store: {self.rows} rows."]
        for label, ids in (
            ("missing from the vector store", self.missing),
            ("in the vector store but not live in SQLite", self.extra),
            ("recorded but not marked applied (pending)", self.pending),
        ):
            if ids:
                out.append(f"{len(ids)} {label}: {_sample(ids)}")
        if self.differing:
            out.append(f"{len(self.differing)} differing:")
            for memory_id, fields in sorted(self.differing.items())[:SHOWN]:
                out.append(f"  {memory_id}: {', '.join(fields)}")
        out.append("The stores agree." if self.clean else "The stores disagree.")
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
    row_ids = await service.vectors.ids()
    report = Report(records=len(records), rows=len(row_ids), pending=sorted(await service.history.pending_ids()))
    rows: dict[str, MemoryRecord] = {}
    for start in range(0, len(row_ids), READ_CHUNK):
        rows.update((r.id, r) for r in await service.vectors.get(row_ids[start : start + READ_CHUNK]))
    report.missing = sorted(records.keys() - rows.keys())
    report.extra = sorted(rows.keys() - records.keys())
    for memory_id in records.keys() & rows.keys():
        if fields := _differences(records[memory_id], rows[memory_id]):
            report.differing[memory_id] = fields
    return report


async def repair(service: MemoryService, report: Report) -> None:
    """Make the vector store match SQLite for every id the report names."""
    if ids := report.to_repair:
        await service.resync(ids)
        await service.flush()


async def run(settings: Settings, *, fix: bool, out: TextIO) -> int:
    """The command: 0 when the stores agree (after repair, with `fix`), 1 when they don't, 2 on failure."""
    try:
        async with MemoryService(settings) as service:
            report = await check(service)
            for line in report.lines():
                print(line, file=out)
            if report.clean or not fix:
                return 0 if report.clean else 1
            print(f"Repairing {len(report.to_repair)} memory id(s) from SQLite's record...", file=out)
            await repair(service, report)
            after = await check(service)
            for line in after.lines():
                print(line, file=out)
            return 0 if after.clean else 1
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp doctor: {e}", file=sys.stderr)
        return 2
