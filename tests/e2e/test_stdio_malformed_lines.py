"""Over stdio every malformed line gets a JSON-RPC error (with its id when it has a usable one,
null otherwise), invalid UTF-8 is refused and never stored, and the server keeps serving."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.processes import spawn_stdio

PARSE_ERROR, INVALID_REQUEST = -32700, -32600


def add(rid: int, messages: str, **extra: Any) -> bytes:
    """An add_memory request line, ASCII only (a lone surrogate is written as a \\udXXX escape)."""
    arguments = {"messages": messages, "user_id": "u", **extra}
    params = {"name": "add_memory", "arguments": arguments}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}).encode()


def latin1_add(rid: int) -> bytes:
    """add_memory of "café au lait" with the é as one Latin-1 byte: invalid UTF-8."""
    return add(rid, "caf\u00e9 au lait").replace(b"\\u00e9", b"\xe9")


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"k": value}
    return value


# (line, the id the error must carry, its code)
CASES: list[tuple[bytes, Any, int]] = [
    (b'{"id":1,"method":"ping"}', 1, INVALID_REQUEST),  # no "jsonrpc"
    (b'{"jsonrpc":"1.0","id":2,"method":"ping"}', 2, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":3,"method":"tools/list","params":[]}', 3, INVALID_REQUEST),  # params as an array
    (b'{"jsonrpc":"2.0","id":4,"method":"ping","params":"s"}', 4, INVALID_REQUEST),
    (add(5, "a\ud800b"), 5, INVALID_REQUEST),  # a lone surrogate escape (json.dumps writes \ud800)
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', None, INVALID_REQUEST),  # an object id
    (b'{"jsonrpc":"2.0","id":[7],"method":"ping"}', None, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', None, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', None, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', None, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":11}', 11, INVALID_REQUEST),  # no method
    (b'{"jsonrpc":"2.0","id":12,"method":5}', 12, INVALID_REQUEST),
    (b"hello", None, PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":14,', None, PARSE_ERROR),  # cut off
    (b'{"jsonrpc":"2.0","id":15,"method":"ping"} x', None, PARSE_ERROR),
    (b'"x"', None, INVALID_REQUEST),
    (b"42", None, INVALID_REQUEST),
    (b"null", None, INVALID_REQUEST),
    (b"{}", None, INVALID_REQUEST),
    (b"[]", None, INVALID_REQUEST),
    (add(21, "deep", metadata=deep(250)), 21, INVALID_REQUEST),  # nested 250 deep
    (latin1_add(22), 22, PARSE_ERROR),  # invalid UTF-8
    (b"\xff\xfe{}", None, PARSE_ERROR),
]


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.proc = spawn_stdio(data_dir)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))  # every stdout line is JSON

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float = 30) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no reply") from None

    def request(self, rid: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
        message = self.reply(60)
        assert message["id"] == rid, message
        return message


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        s.request(0, "initialize", hello)
        s.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        yield s
    finally:
        s.proc.kill()
        s.proc.wait()


def test_every_malformed_line_gets_a_json_rpc_error_and_the_server_keeps_serving(server: Server) -> None:
    for line, rid, code in CASES:
        message = server.reply() if server.send(line) is None else {}
        assert message.get("jsonrpc") == "2.0" and message.get("id") == rid, (line[:60], message)
        assert message.get("error", {}).get("code") == code, (line[:60], message)
    server.send(b'[{"jsonrpc":"2.0","id":"b1","method":"ping"},{"jsonrpc":"2.0","id":"b2","method":"ping"}]')
    assert {server.reply()["id"], server.reply()["id"]} == {"b1", "b2"}  # a batch: one error per request
    server.send(b"   ")  # a blank line is no message: no reply
    server.send(b'\xef\xbb\xbf{"jsonrpc":"2.0","id":"bom","method":"ping"}')  # a byte order mark is ignored
    assert server.reply() == {"jsonrpc": "2.0", "id": "bom", "result": {}}


def test_invalid_utf8_is_refused_and_nothing_is_stored(server: Server) -> None:
    message = server.reply() if server.send(latin1_add(1)) is None else {}
    assert message["id"] == 1 and message["error"]["code"] == PARSE_ERROR
    assert "not valid UTF-8" in message["error"]["message"] and "Nothing was done" in message["error"]["message"]
    listed = server.request(2, "tools/call", {"name": "list_memories", "arguments": {"user_id": "u"}})
    assert listed["result"]["structuredContent"]["results"] == []
    added = server.request(3, "tools/call", {"name": "add_memory", "arguments": {"messages": "café", "user_id": "u"}})
    assert added["result"]["structuredContent"]["results"][0]["memory"] == "café"
