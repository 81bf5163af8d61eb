"""Input checks shared by every entry point. Each failure is an InvalidInput naming the problem."""

from __future__ import annotations

import json
import math
import re
import unicodedata
import uuid
from typing import Any

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import SCOPE_FIELDS, Scope

MAX_SCOPE_BYTES = 128
MAX_METADATA_BYTES = 16384
MAX_METADATA_DEPTH = 5
METADATA_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")  # whole key: fullmatch ("$" would let "key\n" by)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: C0, DEL and C1
# What no one sees: separators (Zs, Zl, Zp), controls (Cc: whitespace such as tab and newline
# included), format characters (Cf: zero-width space, joiners, U+FEFF, bidi marks, tags) and
# combining marks (Mn, Me), which show only on a character before them.
INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
# Letters by category that Unicode makes default-ignorable (rendered as nothing): the Hangul fillers.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# The deepest JSON a person may type into a form (the dashboard's filters and metadata); the
# stdio transport refuses deeper messages too (stdio.MAX_DEPTH).
MAX_FORM_JSON_DEPTH = 64
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Milvus stores JSON integers as signed 64-bit (pymilvus refuses larger ones, and the whole batch
# of rows with them); SQLite's integers are the same width.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def has_surrogates(value: str) -> bool:
    """Lone UTF-16 surrogates: not valid UTF-8, so no store can keep them."""
    return bool(_SURROGATE_RE.search(value))


def is_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def has_control_chars(value: str) -> bool:
    """NUL and other C0 control characters and DEL (tab, newline and CR are allowed)."""
    return bool(_CONTROL_RE.search(value))


def is_visible(char: str) -> bool:
    """Whether one character shows anything by itself: not a space, separator, control, format
    character, combining mark alone or Hangul filler (INVISIBLE_CATEGORIES, INVISIBLE_LETTERS)."""
    return char not in INVISIBLE_LETTERS and unicodedata.category(char) not in INVISIBLE_CATEGORIES


def has_visible_char(text: str) -> bool:
    """At least one visible character (`is_visible`): a text without one reads as empty."""
    return any(is_visible(c) for c in text)


def is_usable_text(text: str) -> bool:
    """Whether `check_text` would take `text` as content (size aside): no NUL, no lone surrogate,
    a visible character. For texts that are dropped rather than refused (the LLM's)."""
    return "\x00" not in text and not has_surrogates(text) and has_visible_char(text)


def check_text(text: object, max_bytes: int, what: str = "memory text") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"The {what} must be a string, got {type(text).__name__}.")
    if "\x00" in text:
        raise InvalidInput(f"The {what} contains a NUL character.")
    if not has_visible_char(text):
        raise InvalidInput(
            f"The {what} is empty (it has no visible character); give a short, self-contained fact to remember."
        )
    if has_surrogates(text):
        raise InvalidInput(f"The {what} contains a lone UTF-16 surrogate, which is not valid Unicode text.")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidInput(
            f"The {what} is {size} bytes in UTF-8; the limit is {max_bytes}. Split it into shorter facts."
        )
    return text.strip()


def check_plain_string(value: str, what: str, max_bytes: int, *, tabs_and_newlines: bool = True) -> str:
    """A string a store can keep and a filter can match: no C0 control character or DEL (tab,
    newline and CR allowed when `tabs_and_newlines`; without it, no control character at all: C0,
    DEL or C1), no lone surrogates, at most `max_bytes` of UTF-8."""
    controls = _CONTROL_RE if tabs_and_newlines else _ANY_CONTROL_RE
    if controls.search(value):
        raise InvalidInput(f"{what} contains a control character.")
    if has_surrogates(value):
        raise InvalidInput(f"{what} contains a lone UTF-16 surrogate, which is not valid Unicode text.")
    if len(value.encode("utf-8")) > max_bytes:
        raise InvalidInput(f"{what} is longer than {max_bytes} bytes.")
    return value


def json_text_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON text nest (the outermost one is level 1), read
    without parsing (so without recursion); brackets inside strings do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def parse_json_object(text: str, name: str) -> dict[str, Any]:
    """A JSON object typed by a person (the dashboard's filters and metadata fields): InvalidInput
    naming the problem for text that is not JSON, not an object, or nested deeper than
    MAX_FORM_JSON_DEPTH levels (refused before parsing: Python's decoder recurses)."""
    depth = json_text_depth(text)
    if depth > MAX_FORM_JSON_DEPTH:
        raise InvalidInput(f"{name} is nested {depth} levels deep (at most {MAX_FORM_JSON_DEPTH}).")
    try:
        value = json.loads(text)
    except RecursionError:  # a backstop: the depth is checked above
        raise InvalidInput(f"{name} is nested too deeply (at most {MAX_FORM_JSON_DEPTH} levels).") from None
    except ValueError as e:
        raise InvalidInput(f"{name} is not JSON: {e}.") from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{name} must be a JSON object, e.g. {{"category": "work"}}.')
    return value  # pyright: ignore[reportUnknownVariableType]


def check_scope_value(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise InvalidInput(f"{name} is empty; omit it or give a non-empty id.")
    return check_plain_string(value, name, MAX_SCOPE_BYTES, tabs_and_newlines=False)


def check_scope(user_id: object = None, agent_id: object = None, run_id: object = None) -> Scope:
    return Scope(
        check_scope_value("user_id", user_id),
        check_scope_value("agent_id", agent_id),
        check_scope_value("run_id", run_id),
    )


def check_memory_id(memory_id: object) -> str:
    if not isinstance(memory_id, str) or not memory_id:
        raise InvalidInput("memory_id must be a non-empty string (a UUID returned by add_memory).")
    try:
        if not memory_id.isascii():  # uuid.UUID would read other scripts' digits as hex digits
            raise ValueError
        parsed = uuid.UUID(memory_id)
    except ValueError:
        shown = memory_id if len(memory_id) <= 80 else memory_id[:80] + "..."
        raise InvalidInput(f"memory_id {shown!r} is not a valid memory id (expected a UUID).") from None
    return str(parsed)


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold must be from -1 to 1 (scores are -1..1, higher is better), got {threshold}.")


def check_limit(limit: object, low: int, high: int, name: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInput(f"{name} must be an integer from {low} to {high}.")
    if not low <= limit <= high:
        raise InvalidInput(f"{name} must be from {low} to {high}, got {limit}.")
    return limit


def _check_json(value: Any, path: str, depth: int, max_depth: int | None = MAX_METADATA_DEPTH) -> None:
    if max_depth is not None and depth > max_depth:
        raise InvalidInput(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels at {path}.")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not is_int64(value):
            raise InvalidInput(
                f"metadata value at {path} is an integer outside the signed 64-bit range "
                f"({INT64_MIN} to {INT64_MAX}); store it as a string."
            )
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"metadata value at {path} contains a NUL character.")
        if has_surrogates(value):
            raise InvalidInput(f"metadata value at {path} contains a lone UTF-16 surrogate, which is not valid text.")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"metadata value at {path} is {value}; only finite numbers are JSON.")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1, max_depth)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"metadata key {k!r} at {path} is not a string.")
            if has_surrogates(k) or "\x00" in k:
                raise InvalidInput(f"metadata key {k!r} at {path} contains a NUL or a lone UTF-16 surrogate.")
            _check_json(item, f"{path}.{k}", depth + 1, max_depth)
        return
    raise InvalidInput(f"metadata value at {path} has type {type(value).__name__}, which is not JSON.")


def check_metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput('metadata must be a JSON object such as {"category": "hobbies"}.')
    for key in metadata:
        if not isinstance(key, str) or not METADATA_KEY_RE.fullmatch(key):
            raise InvalidInput(
                f"metadata key {key!r} is not allowed: use 1-64 letters, digits, '_' or '-', "
                "starting with a letter or '_'."
            )
        if key in SCOPE_FIELDS:
            raise InvalidInput(f"metadata key {key!r} is reserved; pass it as the {key} argument instead.")
    _check_json(metadata, "metadata", 1)
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}.")
    return dict(metadata)


def storage_problem(metadata: dict[str, Any]) -> str | None:
    """Why the vector store would refuse this stored metadata (a record written before these checks
    existed, or around them), or None."""
    try:
        _check_json(metadata, "metadata", 1, max_depth=None)
    except InvalidInput as e:
        return str(e)
    return None
