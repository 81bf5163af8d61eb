"""Verbatim adds: each message stored as given, unless the scope already holds it.

Messages added together are a conversation: each stored message keeps the messages around it (the
CONTEXT_BEFORE before it, the CONTEXT_AFTER after it) as its context, for keyword search
(`records.CONTEXT_KEY`).

Identical text in the scope returns the stored memory with event NONE; with `near_dup`, so does
text whose closest memory scores above MEMORY_DEDUP_THRESHOLD and has the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from milvus_memory_mcp import filters
from milvus_memory_mcp.core.messages import Message
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Signed
from milvus_memory_mcp.history import RecordStore
from milvus_memory_mcp.models import AddEvent, AddResult
from milvus_memory_mcp.records import (
    Caller,
    Change,
    MemoryRecord,
    Scope,
    conversation_context,
    now_us,
    text_hash,
    with_context,
)
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import VectorStore


def numbers(text: str) -> list[str]:
    # Embeddings barely tell "Exam on 2025-11-20" from "... 11-21" (cosine 0.99 with MiniLM), so
    # texts whose numbers differ are never near-duplicates. Order counts too: "room 12, floor 3" is
    # not "room 3, floor 12".
    return re.findall(r"\d+", text)


@dataclass
class VerbatimAdds:
    settings: Settings
    records: RecordStore
    vectors: VectorStore
    writes: WriteProtocol

    async def add(
        self,
        parsed: list[Message],
        signed: Signed,
        scope: Scope,
        meta: dict[str, Any],
        caller: Caller,
        *,
        near_dup: bool = False,
        note: str | None = None,
        reason: str | None = None,
        source_hash: str | None = None,
        at: int | None = None,
    ) -> AddResult:
        """Store each message (`signed`: their vectors) in `scope`, dated `at` (µs; None: now); the
        stores are open."""
        threshold = self.settings.dedup_threshold
        check_near = near_dup and threshold < 1
        results: list[AddEvent] = []
        changes: list[Change] = []
        skipped = 0
        async with self.writes.lock:
            seen: dict[str, MemoryRecord] = {}
            batch: list[tuple[MemoryRecord, list[float]]] = []
            texts = [m.content for m in parsed]
            vectors = await self.writes.current(texts, signed)
            said = now_us() if at is None else at
            for i, (message, vector) in enumerate(zip(parsed, vectors, strict=True)):
                # a stored message's context (records.CONTEXT_KEY): the messages around it
                context = conversation_context(texts, i)
                digest = text_hash(message.content)
                existing = seen.get(digest) or await self.records.find_live_by_hash(digest, scope.key)
                if existing is not None:
                    results.append(
                        AddEvent(
                            id=existing.id, memory=existing.memory, event="NONE", reason="Already stored in this scope."
                        )
                    )
                    continue
                if check_near:
                    close = await self._closest(vector, scope, batch)
                    if (
                        close is not None
                        and close[1] > threshold
                        and numbers(close[0].memory) == numbers(message.content)
                    ):
                        skipped += 1
                        results.append(
                            AddEvent(
                                id=close[0].id,
                                memory=close[0].memory,
                                event="NONE",
                                reason=f"Near-duplicate of this memory (similarity {close[1]:.3f} > {threshold}).",
                            )
                        )
                        continue
                # a microsecond apart, so that they list in the order they were said (`at` is one time)
                record = MemoryRecord.new(message.content, with_context(meta, context), scope, said + i)
                seen[digest] = record
                batch.append((record, vector))
                change = Change.of(
                    "ADD", None, record, caller.actor, vector, role=message.role, reason=reason, source_hash=source_hash
                )
                changes.append(change)
                results.append(AddEvent(id=record.id, memory=record.memory, event="ADD"))
            await self.writes.apply(changes)
        if skipped:
            dup_note = (
                f"{skipped} message(s) not stored: too similar to a stored memory (returned with event NONE); "
                "pass infer=false to store them anyway."
            )
            note = f"{note} {dup_note}" if note else dup_note
        return AddResult(results=results, note=note)

    async def _closest(
        self, vector: list[float], scope: Scope, batch: list[tuple[MemoryRecord, list[float]]]
    ) -> tuple[MemoryRecord, float] | None:
        """The most similar live memory in scope, including those added earlier in this call."""
        hits = await self.vectors.search(vector, filters.scope_conditions(scope), 1)
        best = hits[0] if hits else None
        for record, other in batch:
            score = sum(a * b for a, b in zip(vector, other, strict=True))
            if best is None or score > best[1]:
                best = (record, score)
        return best
