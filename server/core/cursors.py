"""Keyset cursors for `list_memories`: (created_at, id) of a page's last memory, opaque to agents.

A cursor comes back from the caller (an agent, the CLI's `--cursor`, the dashboard's `cursor=`
link), so `decode_cursor` trusts nothing in it: whatever it holds that `encode_cursor` could not
have written is refused with the one message below, before it reaches a store.
"""

from __future__ import annotations

import base64
import binascii
import json

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import MemoryRecord
from milvus_memory_mcp.validation import has_control_chars, has_surrogates, is_int64

# A real cursor is base64 of [created_at, a UUID], about 80 characters; the cap keeps a tampered
# one small (no deep nesting for the JSON decoder, no huge numbers) while leaving ample room.
MAX_CURSOR_CHARS = 512
INVALID = "cursor is not valid: pass the next_cursor value from the previous page."


def encode_cursor(last: MemoryRecord) -> str:
    raw = json.dumps([last.created_at, last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[int, str]:
    """(created_at, id) from a cursor `encode_cursor` wrote; InvalidInput for anything else."""
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(created_at, bool) or not isinstance(created_at, int) or not is_int64(created_at):
            raise ValueError  # the stores' integers are 64-bit: a larger one overflows at the bind
        if not isinstance(memory_id, str) or has_surrogates(memory_id) or has_control_chars(memory_id):
            raise ValueError  # a lone surrogate cannot be encoded for the store; ids have no controls
        return created_at, memory_id
    # ValueError covers binascii.Error, UnicodeError and json's errors; RecursionError and
    # MemoryError only as a backstop (the length cap keeps a cursor far from either).
    except (ValueError, TypeError, binascii.Error, RecursionError, MemoryError):
        raise InvalidInput(INVALID) from None
