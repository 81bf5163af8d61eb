"""The two inference steps and the mapping of the model's decisions onto real memories.

1. `extract`: messages -> short facts (one LLM call).
2. `decide`: facts + similar stored memories -> one decision per fact (one LLM call; skipped by
   the caller when nothing similar is stored). Memories are shown under the aliases "0", "1", ...
3. `plan`: decisions -> `Action`s on real ids. An id that is not one of the aliases shown can
   never reach a memory: it is ignored and logged. Pure, no I/O.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError, field_validator

from milvus_memory_mcp.errors import InferenceError
from milvus_memory_mcp.inference import ChatModel
from milvus_memory_mcp.inference.prompts import (
    DECIDE_SYSTEM,
    DECISIONS_SCHEMA,
    EXTRACT_SYSTEM,
    FACTS_SCHEMA,
    decide_input,
    extract_input,
)
from milvus_memory_mcp.validation import is_usable_text

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
MAX_FACTS = 20
MAX_PROBLEMS = 10  # problems listed in the note of one add
_NO_DECISION = "Added: the LLM gave no decision for this fact."
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)\s*```", re.DOTALL)


class Facts(BaseModel):
    facts: list[str]


class Decision(BaseModel):
    fact: int | None = None
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    id: str | None = None
    text: str | None = None
    reason: str | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Decisions(BaseModel):
    decisions: list[Decision]


@dataclass(frozen=True)
class Action:
    """What to do to the store: `target` is a real memory id (UPDATE, DELETE, NONE); `text` the
    memory's new text (ADD, UPDATE) or the fact already known (NONE)."""

    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    text: str | None
    target: str | None
    reason: str


def parse_reply(text: str, model: type[M]) -> M:
    """The model's JSON reply, tolerating a code fence or prose around the object; any other
    reply (not JSON, the wrong shape, nested too deeply) is an InferenceError."""
    fenced = _FENCE_RE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        raise InferenceError(f"The LLM's reply holds no JSON object: {text[:120]!r}")
    try:
        return model.model_validate(json.loads(body[start : end + 1] if end > start else body[start:]))
    except json.JSONDecodeError as e:
        raise InferenceError(f"The LLM's reply is not valid JSON ({e.msg} at character {e.pos}).") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InferenceError(f"The LLM's reply has the wrong shape ({where}: {first['msg']}).") from e
    except RecursionError as e:
        raise InferenceError("The LLM's reply is JSON nested too deeply.") from e
    except (ValueError, TypeError) as e:  # e.g. a number too long to convert
        raise InferenceError(f"The LLM's reply could not be read ({str(e)[:120]}).") from e


def _clean(text: str | None, max_bytes: int) -> str | None:
    """A text of the model's as the tools would take it (runs of white space one space), or None
    when a tool would refuse it: empty or invisible, a NUL or lone surrogate, over `max_bytes`."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    if not is_usable_text(text):
        return None
    return text if len(text.encode("utf-8")) <= max_bytes else None


async def extract(
    llm: ChatModel, messages: list[tuple[str, str]], today: str, max_bytes: int
) -> tuple[list[str], list[str]]:
    """Facts in `messages` ((role, content) pairs; [] when the model finds nothing worth keeping),
    and the problems met: facts left out because no tool would store them."""
    reply = await llm.complete(EXTRACT_SYSTEM, extract_input(messages, today), "facts", FACTS_SCHEMA)
    raw = parse_reply(reply, Facts).facts
    facts: list[str] = []
    unusable = 0
    for f in raw:
        cleaned = _clean(f, max_bytes)
        if cleaned is None:
            unusable += 1
        elif cleaned not in facts:
            facts.append(cleaned)
    if raw and not facts:
        raise InferenceError("The LLM returned only empty, unreadable or over-long facts.")
    problems = [f"{unusable} fact(s) of the LLM were empty, unreadable or over {max_bytes} bytes"] if unusable else []
    if len(facts) > MAX_FACTS:
        logger.warning("the LLM returned %d facts; keeping the first %d", len(facts), MAX_FACTS)
        problems.append(f"{len(facts) - MAX_FACTS} fact(s) beyond the first {MAX_FACTS} were left out")
    return facts[:MAX_FACTS], problems


async def decide(llm: ChatModel, facts: list[str], memories: list[str]) -> list[Decision]:
    """One decision per fact against `memories` (shown as ids "0", "1", ...)."""
    reply = await llm.complete(DECIDE_SYSTEM, decide_input(memories, facts), "decisions", DECISIONS_SCHEMA)
    return parse_reply(reply, Decisions).decisions


def plan(facts: list[str], decisions: list[Decision], ids: list[str], max_bytes: int) -> tuple[list[Action], list[str]]:
    """Map decisions onto `ids` (alias "i" is ids[i]); returns the actions and the problems met.

    One decision per fact: the first usable one for each fact index is applied, decisions beyond
    that (or naming no fact) are ignored. An unknown alias is ignored (an UPDATE of it becomes an
    ADD of its text, so nothing said is lost); a fact left without a usable decision is added.
    """
    chosen: dict[int, Action] = {}
    unusable: set[int] = set()  # facts whose decisions could not be applied
    problems: list[str] = []
    ignored = 0
    for d in decisions:
        index = d.fact if d.fact is not None and 0 <= d.fact < len(facts) else None
        if index is None or index in chosen:
            ignored += 1
            continue
        action = _action(d, facts[index], ids, max_bytes, problems)
        if action is None:
            unusable.add(index)
        else:
            chosen[index] = action
    if ignored:
        logger.warning("ignoring %d decision(s) of the LLM beyond one per fact", ignored)
        problems.append(f"{ignored} more decision(s) than facts were ignored")
    actions = list(chosen.values())
    for i, fact in enumerate(facts):
        if i not in chosen:
            logger.warning("the LLM gave no usable decision for fact %d; adding it", i)
            why = "could not be applied" if i in unusable else None
            reason = f"Added: the LLM's decision for this fact {why}." if why else _NO_DECISION
            actions.append(Action("ADD", fact, None, reason))
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS - 1 :] = [f"and {len(problems) - MAX_PROBLEMS + 1} more problems"]
    return actions, problems


def _action(d: Decision, fact: str, ids: list[str], max_bytes: int, problems: list[str]) -> Action | None:
    """The action of one decision on `fact`, or None (with the problem noted) when it cannot be applied."""
    reason = _clean(d.reason, 500) or f"{d.event} decided by the LLM."
    text = _clean(d.text, max_bytes) or fact
    target = _alias(d.id, ids)
    if d.event in ("UPDATE", "DELETE", "NONE") and target is None:
        logger.warning("ignoring %s of unknown memory id %r proposed by the LLM", d.event, d.id)
        problems.append(f"ignored a {d.event} of unknown memory id {str(d.id)[:40]!r}")
        return Action("ADD", text, None, reason) if d.event == "UPDATE" else None
    # A NONE keeps its fact: stored after all when its memory is gone by the time it is applied.
    kept = {"ADD": text, "UPDATE": text, "NONE": fact}.get(d.event)
    return Action(d.event, kept, target, reason)


def _alias(alias: str | None, ids: list[str]) -> str | None:
    if alias is None or not (alias.isascii() and alias.isdigit()):
        return None
    index = int(alias)
    return ids[index] if index < len(ids) else None
