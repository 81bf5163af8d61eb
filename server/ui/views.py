"""Pure helpers for the pages: word diffs, a memory's timeline, what it said at a time, form values."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.ui.backend import Refused
from milvus_memory_mcp.validation import parse_json_object

SCOPE_FIELDS = ("user_id", "agent_id", "run_id")
_WORDS = re.compile(r"\s*\S+|\s+")  # words with the spaces before them
REWRITTEN = 0.3  # below this similarity, a change shows as the old text out, the new in


def word_diff(old: str | None, new: str | None) -> list[tuple[str, str]]:
    """(op, text) pieces from `old` to `new`: op is "same", "del" or "ins" (the template escapes text)."""
    a, b = _WORDS.findall(old or ""), _WORDS.findall(new or "")
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    if a and b and matcher.ratio() < REWRITTEN:
        return [("del", old or ""), ("ins", new or "")]
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(b[j1:j2])))
    return out


def when(value: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Belief:
    """What a memory said at a time: its text, or why there was none."""

    at: str
    text: str | None
    note: str


def parse_local_time(value: str) -> datetime:
    """A datetime-local form value (or ISO-8601), naive meaning UTC."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Refused(f"as_of is not a date and time: {value[:40]!r}; use YYYY-MM-DDTHH:MM (UTC).") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def belief_at(events: list[dict[str, Any]], at: datetime) -> Belief:
    """The memory's state after its last event up to `at` (events oldest first, as memory_history gives them)."""
    shown = _shown_time(at)
    last = None
    for e in events:
        if e.get("updated_at") and datetime.fromisoformat(e["updated_at"]) <= at:
            last = e
    if last is None:
        return Belief(shown, None, "It did not exist yet.")
    if last["event"] == "DELETE":
        return Belief(shown, None, "It had been deleted.")
    return Belief(shown, last.get("new_memory"), f"As of its {last['event']} event of {when(last['updated_at'])}.")


def _shown_time(at: datetime) -> str:
    """`at` in UTC; one whose UTC falls outside years 1-9999 (0001-01-01T00:00+01:00) as given. The
    tools take such times too (a moment before, or after, every memory)."""
    try:
        return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except OverflowError:
        return at.isoformat(" ", "minutes")


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events newest first, each with its diff and whether it can be restored to."""
    out = []
    for i, e in enumerate(events):
        latest = i == len(events) - 1
        out.append(
            {
                **e,
                "when": when(e.get("updated_at")),
                "diff": word_diff(e.get("old_memory"), e.get("new_memory")),
                "restorable": not latest and e["event"] != "DELETE" and bool(e.get("id")),
            }
        )
    return out[::-1]


def scope_args(params: Any) -> dict[str, str | None]:
    """The scope fields of a query string (blank: not set)."""
    return {k: (str(params.get(k) or "").strip() or None) for k in SCOPE_FIELDS}


def scope_query(item: dict[str, Any], **extra: str) -> str:
    """A query string naming the scope fields an item has set (and `extra`)."""
    return urlencode({**{k: item[k] for k in SCOPE_FIELDS if item.get(k)}, **{k: v for k, v in extra.items() if v}})


def json_object(text: str | None, name: str) -> dict[str, Any] | None:
    """A JSON object typed into a form (blank: None); what is not one is Refused, saying why."""
    if not text or not text.strip():
        return None
    try:
        return parse_json_object(text, name)
    except InvalidInput as e:
        raise Refused(str(e)) from None


def shown_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
