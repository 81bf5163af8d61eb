"""A real HTTP server on 127.0.0.1 speaking the OpenAI protocol, for the real `openai` client.

Requests are answered from a per-path script of canned replies (status, JSON body, delay) and,
when the script is empty, by a default handler: `/v1/embeddings` returns deterministic hashed
bag-of-words vectors, so similar texts get similar vectors; `/v1/chat/completions` plays a
literal-minded memory LLM (each user message is a fact; a fact equal to a stored memory is NONE,
anything else ADD). `completion()` builds chat replies for scripts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def hashed_embedding(text: str, dims: int) -> list[float]:
    vec = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
        vec[h % dims] += 1.0 if (h >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


CHAT = "/v1/chat/completions"


def completion(
    content: Any = None, *, finish_reason: str = "stop", refusal: str | None = None, model: str = "fake-llm"
) -> dict[str, Any]:
    """A chat.completion body; `content` that is not a string is sent as JSON text."""
    text = content if isinstance(content, str) or content is None else json.dumps(content)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": refusal},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chat_step(body: dict[str, Any]) -> str:
    """Which inference step a chat request is: "facts", "decisions" or "queries" (a query rewrite)."""
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name:
        return name
    return "facts" if "extract memories" in body["messages"][0]["content"] else "decisions"


def chat_input(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON the server sent as the user message."""
    return json.loads(body["messages"][-1]["content"])


class FakeOpenAI:
    def __init__(self, dims: int = 64, delay: float = 0.0) -> None:
        self.dims = dims
        self.delay = delay  # seconds before each default reply (a remote API's fixed latency)
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.handlers: dict[str, Handler] = {"/v1/embeddings": self._embeddings, CHAT: self._chat}
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, path: str, *replies: Reply) -> None:
        """Queue replies for the next requests to `path` (e.g. "/v1/embeddings")."""
        self._scripts[path].extend(replies)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body, _ in self.requests if p == path]

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = int(body.get("dimensions") or self.dims)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": hashed_embedding(t, dims)}
                for i, t in enumerate(inputs)
            ],
            "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        data = chat_input(body)
        if chat_step(body) == "queries":  # a query rewrite: none unless scripted
            return completion({"queries": []})
        if chat_step(body) == "facts":
            return completion({"facts": [m["content"] for m in data["messages"] if m["role"] == "user"]})
        known = {m["text"]: m["id"] for m in data["memories"]}
        decisions = [
            {"fact": i, "event": "NONE", "id": known[f], "text": None, "reason": "Already known."}
            if f in known
            else {"fact": i, "event": "ADD", "id": None, "text": f, "reason": "New information."}
            for i, f in enumerate(data["facts"])
        ]
        return completion({"decisions": decisions})

    def _reply(self, path: str, body: dict[str, Any]) -> Reply:
        if self._scripts[path]:
            return self._scripts[path].popleft()
        handler = self.handlers.get(path)
        if handler is None:
            return Reply(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
        return Reply(200, handler(body), delay=self.delay)

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                reply = fake._reply(self.path, body)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
