"""Keyset cursors for `list_memories`: (created_at, id) of a page's last memory, opaque to agents."""

from __future__ import annotations

import base64
import binascii
import json

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import MemoryRecord


def encode_cursor(last: MemoryRecord) -> str:
    raw = json.dumps([last.created_at, last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created_at, int) or not isinstance(memory_id, str):
            raise ValueError
        return created_at, memory_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid: pass the next_cursor value from the previous page.") from None
