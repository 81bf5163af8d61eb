"""The stdio transport: the SDK's stdio loop, behind a reader that answers every malformed line.

The SDK's own reader drops a line it cannot parse as a JSON-RPC message (the client then waits
forever for the answer to a request that carried an id) and decodes invalid UTF-8 into
replacement characters, which would be stored. Here every line is checked first: one that is
not a valid JSON-RPC message gets a JSON-RPC error (-32700 when it is not UTF-8 JSON, -32600
otherwise), with its id when it has a usable one and null otherwise, as JSON-RPC says, and never
reaches a tool. Blank lines are skipped and a leading byte order mark is ignored (RFC 8259).

stdin is read by a daemon thread, so stopping the server never waits for a line to arrive, and
fd 0 and 1 are moved out of the way while serving as the SDK does (a stray print or a child
process cannot corrupt the protocol stream).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp_types import jsonrpc_message_adapter
from pydantic import ValidationError

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_DEPTH = 64  # JSON nesting; the deepest legal call (filters 8 levels deep) is about 25
BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _usable_id(message: Any) -> str | int | None:
    if isinstance(message, dict):
        rid = message.get("id")
        if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
            return rid
    return None


def _error(rid: str | int | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _depth_and_surrogate(value: Any) -> tuple[int, str | None]:
    """The nesting depth of a parsed JSON value, and a string holding a lone surrogate if any."""
    depth, bad = 0, None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            depth = max(depth, level)
            for k, v in item.items():
                if bad is None and _SURROGATE.search(k):
                    bad = k
                stack.append((v, level + 1))
        elif isinstance(item, list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item)
        elif isinstance(item, str) and bad is None and _SURROGATE.search(item):
            bad = item
    return depth, bad


def check_line(raw: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """One line from stdin: (the text to hand to the SDK, None if refused; the error replies)."""
    raw = raw.removeprefix(BOM).strip()
    if not raw:
        return None, []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        try:  # the id, if the rest of the line can tell it
            rid = _usable_id(json.loads(raw.decode("utf-8", "replace")))
        except ValueError:
            rid = None
        problem = f"byte 0x{raw[e.start]:02x} at offset {e.start} is not valid UTF-8"
        return None, [_error(rid, PARSE_ERROR, f"Parse error: {problem}. Nothing was done; send UTF-8 text.")]
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as e:
        return None, [_error(None, PARSE_ERROR, f"Parse error: not JSON ({e}).")]
    if isinstance(message, list):
        reason = "Invalid Request: JSON-RPC batches are not supported by MCP; send one message per line."
        ids = [rid for item in message if (rid := _usable_id(item)) is not None]
        return None, [_error(rid, INVALID_REQUEST, reason) for rid in ids] or [_error(None, INVALID_REQUEST, reason)]
    if not isinstance(message, dict):
        return None, [_error(None, INVALID_REQUEST, "Invalid Request: a message must be a JSON object.")]
    rid = _usable_id(message)
    if "id" in message and rid is None:
        reason = "Invalid Request: id must be a string or an integer."
        return None, [_error(None, INVALID_REQUEST, reason)]
    depth, bad = _depth_and_surrogate(message)
    if depth > MAX_DEPTH:
        reason = f"Invalid Request: nested {depth} levels deep (at most {MAX_DEPTH})."
        return None, [_error(rid, INVALID_REQUEST, reason)]
    if bad is not None:
        reason = "Invalid Request: a string holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode text."
        return None, [_error(rid, INVALID_REQUEST, reason)]
    if message.get("jsonrpc") != "2.0":
        return None, [_error(rid, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0".')]
    if "params" in message and not isinstance(message["params"], dict):
        return None, [_error(rid, INVALID_REQUEST, "Invalid Request: params must be an object (MCP names them).")]
    try:
        jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "message"
        return None, [_error(rid, INVALID_REQUEST, f"Invalid Request: {where}: {first['msg']}.")]
    return text, []


@contextmanager
def _claimed_stdio() -> Iterator[tuple[int, int]]:
    """Private duplicates of fd 0 and 1; while they are in use fd 0 reads /dev/null and fd 1 goes
    to stderr. Both are put back on exit."""
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
        yield wire_in, wire_out
    finally:
        os.close(null)
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_out)  # wire_in stays open: the reader thread may still be blocked on it


class _Writer:
    """stdout for the SDK's writer and for our error replies, one whole line at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = anyio.Lock()
        self._pending: list[str] = []

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    async def write(self, text: str) -> None:
        self._pending.append(text)

    async def flush(self) -> None:
        data, self._pending = "".join(self._pending).encode("utf-8"), []
        async with self._lock:
            await anyio.to_thread.run_sync(self._write_all, data)

    async def reply(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._write_all, json.dumps(message).encode() + b"\n")


class _Lines:
    """The checked lines of stdin, as the SDK's reader iterates them."""

    def __init__(self, receive: MemoryObjectReceiveStream[bytes], writer: _Writer) -> None:
        self._receive = receive
        self._writer = writer

    async def __aiter__(self) -> AsyncIterator[str]:
        async for raw in self._receive:
            text, errors = check_line(raw)
            for error in errors:
                logger.warning("refused a malformed message: %s", error["error"]["message"])
                await self._writer.reply(error)
            if text is not None:
                yield text


def _read_stdin(fd: int, send: MemoryObjectSendStream[bytes], token: anyio.lowlevel.EventLoopToken) -> None:
    try:
        with os.fdopen(fd, "rb", closefd=False) as wire:
            for line in wire:
                anyio.from_thread.run(send.send, line, token=token)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.RunFinishedError):
        return  # the server stopped reading
    except OSError as e:
        logger.warning("stdin failed: %s", e)
    try:
        anyio.from_thread.run_sync(send.close, token=token)  # end of input: the session ends
    except anyio.RunFinishedError:
        pass


async def run_stdio(server: MCPServer) -> None:
    """Serve `server` over stdin/stdout until stdin ends or the task is cancelled."""
    send, receive = anyio.create_memory_object_stream[bytes](16)
    with _claimed_stdio() as (wire_in, wire_out), send, receive:
        writer = _Writer(wire_out)
        token = anyio.lowlevel.current_token()
        threading.Thread(target=_read_stdin, args=(wire_in, send, token), name="stdin", daemon=True).start()
        lines = cast(Any, _Lines(receive, writer))
        async with stdio_server(stdin=lines, stdout=cast(Any, writer)) as (read_stream, write_stream):
            lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]  # as mcp.Client does
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
