"""The sharing protocol's light parts (server/sharing.py): frames, the settings digest, the caller.

Kept apart so that a client of the owner (the `hook` commands, server/hooks.py) imports nothing
heavy: no MCP SDK, no Milvus, no model, no pydantic.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
from typing import TYPE_CHECKING, Any

from milvus_memory_mcp.records import Caller, Scope

if TYPE_CHECKING:
    from milvus_memory_mcp.settings import Settings

# Settings that may differ between the processes sharing a store; all others must match.
PROCESS_SETTINGS = frozenset(
    {
        "transport",
        "host",
        "port",
        "auth_tokens",
        "allow_unauthenticated",
        "allowed_hosts",
        "allowed_origins",
        "call_timeout",
        "session_idle_timeout",
        "max_sessions_per_credential",
        "log_level",
        "user_id",
    }
)
# Messages are length-prefixed frames (8-byte big-endian length, then JSON), so that no legal
# reply meets a size limit: the largest, a list_memories page of 1000 memories of 65,535 bytes and
# 16 KiB of metadata each, escaped twice (structured content and its text copy), stays under 1 GiB.
FRAME_HEADER = struct.Struct("!Q")
MAX_FRAME = 4 * 1024**3  # only a sanity bound against a peer that does not speak this protocol
# A request is read whole before it is checked: bounded far lower than a reply. The largest, a batch
# of `import` lines, is sent before it reaches MAX_BATCH_BYTES (a line alone is at most MAX_LINE_BYTES).
MAX_REQUEST = 256 * 1024**2
MAX_BATCH_BYTES = 64 * 1024**2
MAX_LINE_BYTES = 128 * 1024**2


def shared_settings(settings: Settings) -> dict[str, str]:
    """A digest of each setting the owner's core depends on (digests: the Milvus token is secret)."""
    values = settings.model_dump(mode="json", exclude=set(PROCESS_SETTINGS))
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16] for k, v in values.items()}


def caller_to_json(caller: Caller) -> dict[str, Any]:
    return {
        "bound": dict(caller.bound.items()) if caller.bound else None,
        "actor": caller.actor,
        "read_only": caller.read_only,
        "default_user_id": caller.default_user_id,
    }


def caller_from_json(data: dict[str, Any]) -> Caller:
    bound = data.get("bound")
    return Caller(
        bound=Scope(**bound) if bound else None,
        actor=data.get("actor"),
        read_only=bool(data.get("read_only")),
        default_user_id=data.get("default_user_id"),
    )


def exchange(path: str, request: dict[str, Any], timeout: float) -> Any:
    """One blocking request/reply with the owner on its Unix socket (for short-lived clients)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        data = json.dumps(request, separators=(",", ":")).encode()
        sock.sendall(FRAME_HEADER.pack(len(data)) + data)
        (size,) = FRAME_HEADER.unpack(_receive(sock, FRAME_HEADER.size))
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes")
        return json.loads(_receive(sock, size))


def _receive(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the owner closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
