"""`decode_cursor` trusts nothing in a cursor: whatever `encode_cursor` could not have written is
the one clear InvalidInput, never an OverflowError, RecursionError or UnicodeEncodeError later on."""

from __future__ import annotations

import base64
import json

import pytest

from milvus_memory_mcp.core.cursors import MAX_CURSOR_CHARS, decode_cursor, encode_cursor
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import MemoryRecord

MESSAGE = "cursor is not valid: pass the next_cursor value from the previous page."
MEMORY_ID = "5c8382e1-5c99-4bc3-a23b-70a2a75539b2"


def cursor_of(raw: str) -> str:
    """A cursor the way encode_cursor makes one, around any text."""
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


TAMPERED = {
    "an integer beyond 64 bits": cursor_of(json.dumps([2**70, MEMORY_ID])),
    "an integer just beyond 64 bits": cursor_of(json.dumps([2**63, MEMORY_ID])),
    "a negative integer beyond 64 bits": cursor_of(json.dumps([-(2**63) - 1, MEMORY_ID])),
    "an integer of 5000 digits": cursor_of(f'[{"9" * 5000}, "{MEMORY_ID}"]'),
    "deeply nested JSON": cursor_of("[" * 50000 + "]" * 50000),
    "nested JSON within the length cap": cursor_of("[" * 300 + "]" * 300)[:MAX_CURSOR_CHARS],
    "a lone surrogate in the id": cursor_of('[1, "\\ud800"]'),
    "a raw lone surrogate in the id": cursor_of('[1, "\ud800"]'),
    "a NUL in the id": cursor_of('[1, "a\\u0000b"]'),
    "a boolean time": cursor_of(json.dumps([True, MEMORY_ID])),
    "a float time": cursor_of(json.dumps([1.5, MEMORY_ID])),
    "an infinite time": cursor_of(f'[1e999, "{MEMORY_ID}"]'),
    "a number as id": cursor_of("[1, 2]"),
    "three items": cursor_of(json.dumps([1, MEMORY_ID, 3])),
    "an object": cursor_of(json.dumps({"t": 1, "id": MEMORY_ID})),
    "a string of two characters": cursor_of('"ab"'),
    "not JSON": cursor_of("[1, "),
    "not UTF-8": base64.urlsafe_b64encode(b"[1, \xff]").decode(),
    "not base64": "%%%%",
    "a non-ASCII cursor": "\u00e9\u00e9\u00e9\u00e9",
    "a lone surrogate in the cursor": "abc\ud800",
    "too long": "A" * (MAX_CURSOR_CHARS + 1),
}


@pytest.mark.parametrize("cursor", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_cursor_is_the_one_clear_error(cursor: str) -> None:
    with pytest.raises(InvalidInput) as e:
        decode_cursor(cursor)
    assert str(e.value) == MESSAGE


@pytest.mark.parametrize("cursor", [None, 12, b"WzEsImEiXQ", ["a"]])
def test_a_cursor_that_is_not_a_string_is_the_same_error(cursor: object) -> None:
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        decode_cursor(cursor)


def test_a_cursor_encode_cursor_wrote_decodes_to_its_memory() -> None:
    for created_at in (0, 1_732_000_000_123_456, 2**63 - 1, -(2**63)):
        record = MemoryRecord(MEMORY_ID, "a fact", "h", {}, "alice", None, None, created_at, created_at)
        cursor = encode_cursor(record)
        assert len(cursor) <= MAX_CURSOR_CHARS
        assert decode_cursor(cursor) == (created_at, MEMORY_ID)
