"""Inferred adds (with an LLM configured): extract facts, decide against similar memories, apply.

The LLM is called outside the write lock; the targets of its decisions are re-read under the lock
and must still be live and in scope. On an LLM failure the input is stored verbatim, with a note.
The prompts and the mapping of the model's decisions onto real ids are server/inference/.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from milvus_memory_mcp import filters
from milvus_memory_mcp.core.adds import VerbatimAdds
from milvus_memory_mcp.core.messages import Message
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Embedder, embed_signed
from milvus_memory_mcp.errors import InferenceError
from milvus_memory_mcp.history import RecordStore
from milvus_memory_mcp.inference import ChatModel
from milvus_memory_mcp.models import AddEvent, AddResult
from milvus_memory_mcp.records import Caller, Change, MemoryRecord, Scope, now_us, text_hash
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import VectorStore

if TYPE_CHECKING:
    from milvus_memory_mcp.inference.reconcile import Action

logger = logging.getLogger(__name__)

CANDIDATES_PER_FACT = 5  # similar stored memories shown to the LLM for each new fact

Known = list[tuple[MemoryRecord, str | None]]  # memories the model found already known, with its reason


@dataclass
class InferredAdds:
    settings: Settings
    llm: ChatModel
    embedder: Embedder
    records: RecordStore
    vectors: VectorStore
    writes: WriteProtocol
    verbatim: VerbatimAdds

    async def add(
        self, parsed: list[Message], scope: Scope, meta: dict[str, Any], caller: Caller, at: int | None = None
    ) -> AddResult:
        """Extract facts from `parsed` and apply the LLM's decisions; new memories are dated `at` (µs;
        None: now), and the LLM reads the messages as said that day."""
        from milvus_memory_mcp.inference.reconcile import Decision, decide, extract, plan  # only with an LLM

        pairs = [(m.role or "user", m.content) for m in parsed]
        source_hash = text_hash("\n".join(f"{r}: {c}" for r, c in pairs))
        max_bytes = self.settings.max_memory_bytes
        try:
            said = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at / 1_000_000, tz=timezone.utc)
            facts, problems = await extract(self.llm, pairs, said.date().isoformat(), max_bytes)
            if not facts:
                return AddResult(
                    results=[],
                    note="The LLM found no fact worth remembering; nothing was stored. "
                    "Pass infer=false to store the messages verbatim.",
                )
            fact_vectors = await embed_signed(self.embedder, facts)
            candidates = await self._candidates(fact_vectors.vectors, scope)
            if candidates:
                decisions = await decide(self.llm, facts, [c.memory for c in candidates])
            else:
                decisions = [
                    Decision(fact=i, event="ADD", reason="Nothing similar is stored.") for i in range(len(facts))
                ]
        except InferenceError as e:
            logger.warning("inference failed; storing the input verbatim: %s", e)
            signed = await embed_signed(self.embedder, [m.content for m in parsed])
            return await self.verbatim.add(
                parsed,
                signed,
                scope,
                meta,
                caller,
                note=f"Inference failed, so the input was stored verbatim: {e}",
                reason=f"Stored verbatim: inference failed ({e})",
                source_hash=source_hash,
                at=at,
            )
        actions, planning = plan(facts, decisions, [c.id for c in candidates], max_bytes)
        problems += planning
        missing = sorted({a.text for a in actions if a.text is not None and a.text not in facts})
        missing_vectors = await embed_signed(self.embedder, missing) if missing else None
        async with self.writes.lock:
            vector_of = dict(zip(facts, await self.writes.current(facts, fact_vectors), strict=True))
            if missing_vectors is not None:
                vector_of.update(zip(missing, await self.writes.current(missing, missing_vectors), strict=True))
            results, changes, known = await self._resolve(
                actions, vector_of, scope, meta, caller, source_hash, problems, at
            )
            # NONE decisions change nothing but are history too: "told again, already known, because...".
            # Those on stored memories come first (decided on them as they stood before this add), those on
            # a memory this add creates after it.
            new = {c.new.id for c in changes if c.old is None}
            nones = [
                (r.id in new, Change.of("NONE", r, r, caller.actor, reason=why, source_hash=source_hash).history)
                for r, why in known
            ]
            await self.records.note([h for later, h in nones if not later])
            await self.writes.apply(changes)
            await self.records.note([h for later, h in nones if later])
        note = ("Some of the LLM's output was not applied as given: " + "; ".join(problems) + ".") if problems else None
        return AddResult(results=results, note=note)

    async def _candidates(self, vectors: list[list[float]], scope: Scope) -> list[MemoryRecord]:
        """Stored memories similar to any of the facts, in scope, each once."""
        where = filters.scope_conditions(scope)
        found: dict[str, MemoryRecord] = {}
        for vector in vectors:
            for record, _ in await self.vectors.search(vector, where, CANDIDATES_PER_FACT):
                found.setdefault(record.id, record)
        return list(found.values())

    async def _resolve(
        self,
        actions: list[Action],
        vector_of: dict[str, list[float]],
        scope: Scope,
        meta: dict[str, Any],
        caller: Caller,
        source_hash: str,
        problems: list[str],
        at: int | None,
    ) -> tuple[list[AddEvent], list[Change], Known]:
        """Turn actions into changes against the current state (call with the write lock held), and
        list the memories the model found already known (NONE) with its reasons."""
        from milvus_memory_mcp.inference.reconcile import Action

        current = await self.records.get_many(sorted({a.target for a in actions if a.target}))
        touched: set[str] = set()
        updated: dict[str, MemoryRecord] = {}  # by an earlier UPDATE decision of this add
        added: dict[str, MemoryRecord] = {}
        results: list[AddEvent] = []
        changes: list[Change] = []
        known: Known = []

        said = now_us() if at is None else at
        for n, action in enumerate(actions):
            old = current.get(action.target) if action.target else None
            if action.target is not None:
                if action.event == "NONE" and old is not None and old.id in updated:
                    # known, and just updated by another decision of this add: its fact is there
                    now = updated[old.id]
                    results.append(AddEvent(id=now.id, memory=now.memory, event="NONE", reason=action.reason))
                    continue
                if old is None or old.deleted_at is not None or not scope.contains(old) or old.id in touched:
                    # gone since the LLM saw it, or already deleted by an earlier decision of this add
                    logger.warning("%s of memory %s skipped: no longer applicable", action.event, action.target)
                    if action.event == "DELETE" or action.text is None:
                        continue
                    problems.append(
                        f"{'an' if action.event == 'UPDATE' else 'a'} {action.event} of memory "
                        f"{action.target}, which is gone, was stored as a new memory"
                    )
                    action, old = Action("ADD", action.text, None, action.reason), None
            ts = now_us()
            if action.event == "ADD" and action.text is not None:
                digest = text_hash(action.text)
                existing = added.get(digest) or await self.records.find_live_by_hash(digest, scope.key)
                if existing is not None:
                    results.append(AddEvent(id=existing.id, memory=existing.memory, event="NONE", reason=action.reason))
                    known.append((existing, action.reason))
                    continue
                new = MemoryRecord.new(action.text, meta, scope, said + n)  # a µs apart: listed in order
                added[digest] = new
                changes.append(
                    Change.of(
                        "ADD",
                        None,
                        new,
                        caller.actor,
                        vector_of[action.text],
                        reason=action.reason,
                        source_hash=source_hash,
                    )
                )
                results.append(AddEvent(id=new.id, memory=new.memory, event="ADD", reason=action.reason))
                continue
            if old is None:
                continue
            if action.event == "NONE" or (action.event == "UPDATE" and action.text == old.memory):
                results.append(AddEvent(id=old.id, memory=old.memory, event="NONE", reason=action.reason))
                known.append((old, action.reason))
                continue
            touched.add(old.id)
            if action.event == "UPDATE" and action.text is not None:
                text = action.text
                new = old.updated(memory=text, hash=text_hash(text), metadata={**old.metadata, **meta}, updated_at=ts)
                updated[old.id] = new
                changes.append(
                    Change.of(
                        "UPDATE", old, new, caller.actor, vector_of[text], reason=action.reason, source_hash=source_hash
                    )
                )
                results.append(
                    AddEvent(id=old.id, memory=text, event="UPDATE", previous_memory=old.memory, reason=action.reason)
                )
            elif action.event == "DELETE":
                new = old.updated(deleted_at=ts)
                changes.append(
                    Change.of("DELETE", old, new, caller.actor, reason=action.reason, source_hash=source_hash)
                )
                results.append(AddEvent(id=old.id, memory=old.memory, event="DELETE", reason=action.reason))
        return results, changes, known
