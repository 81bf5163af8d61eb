"""`milvus-memory-mcp hook recall|capture`: Claude Code hooks (and any client with the same mechanism).

- `recall` (UserPromptSubmit): reads the event JSON on stdin (`prompt`, `cwd`, `session_id`), asks
  the process that owns the data dir (server/sharing.py's socket, op `recall`: a read-only search
  run with the owner's settings) to search the configured scope (MEMORY_USER_ID) and prints the
  relevant memories as added context, within a small token budget. It runs on every prompt, so it
  reads only MEMORY_DATA_DIR and MEMORY_USER_ID (or --data-dir, --user-id) and imports neither
  pydantic nor the settings model: ~0.1 s of the user's time besides the search. One line per
  memory: control characters in stored text (a newline too) are shown escaped.
- `capture` (SessionEnd or Stop): reads the transcript file the event names and adds what is new in
  it since the last capture of that session (a state file per session id under the data dir), with
  inference; without an LLM configured it stores nothing and says why on stderr. The new messages
  go in order, CAPTURE_CHUNK per add, at most MAX_CHUNKS adds (none begun after CAPTURE_BUDGET s)
  per run; the state advances past each add stored, so none is skipped: what is left (or met a
  failure) waits for the session's next capture.

A hook must never block the user: any failure (no data dir, no owner, a dead owner, a malformed
event) ends with exit 0 and nothing on stdout; only a short reason on stderr. The model is never
loaded here: the owner embeds and searches, so only light modules are imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.private import read_owner_info
from milvus_memory_mcp.ranking import EXAMPLE_THRESHOLD
from milvus_memory_mcp.records import Caller
from milvus_memory_mcp.terminal import one_line, printable
from milvus_memory_mcp.wire import caller_to_json, exchange, shared_settings

if TYPE_CHECKING:
    from milvus_memory_mcp.settings import Settings

RECALL_LIMIT = 5
RECALL_TIMEOUT = 3.0
MAX_QUERY_CHARS = 1000
# `capture` sends a session's new messages in order, oldest first, CAPTURE_CHUNK per add_memory
# (at most MEMORY_MAX_MESSAGES): few enough that inference's cap of 20 facts per add
# (inference/reconcile.py's MAX_FACTS) is unlikely to leave any out, and at most MAX_CHUNKS adds
# per run, none started after CAPTURE_BUDGET seconds, so one run stays bounded; what is left
# waits for the session's next capture.
CAPTURE_CHUNK = 10
MAX_CHUNKS = 10
CAPTURE_BUDGET = 60.0


class HookSkipped(Exception):
    """Nothing to do, and why (stderr)."""


def recall_main(argv: list[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """`hook recall [--data-dir D] [--user-id U] [--max-tokens N]`; always exit 0."""
    import argparse

    parser = argparse.ArgumentParser(prog="milvus-memory-mcp hook recall", add_help=False)
    parser.add_argument("--data-dir", default=os.environ.get("MEMORY_DATA_DIR"))
    parser.add_argument("--user-id", default=os.environ.get("MEMORY_USER_ID"))
    parser.add_argument("--max-tokens", type=int, default=400)
    try:
        args, _ = parser.parse_known_args(argv)
        if args.data_dir:
            data_dir = Path(args.data_dir).expanduser()
        else:
            from platformdirs import user_data_dir

            data_dir = Path(user_data_dir("milvus-memory-mcp", appauthor=False))
        if not args.user_id:
            raise HookSkipped("set MEMORY_USER_ID (the scope to search)")
        event = _event(stdin)
        context = recall(event, data_dir, args.user_id, max(1, args.max_tokens))
        if context:
            output = {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": context}}
            stdout.write(json.dumps(output, ensure_ascii=False) + "\n")
    except HookSkipped as e:
        stderr.write(f"milvus-memory-mcp hook recall: {e}\n")
    except BaseException as e:  # a hook never fails the user's turn (argparse exits included)
        stderr.write(f"milvus-memory-mcp hook recall: skipped ({type(e).__name__}: {e})\n")
    return 0


def capture_main(settings: Settings, stdin: TextIO, stderr: TextIO) -> int:
    """`hook capture`; always exit 0."""
    try:
        stderr.write(f"milvus-memory-mcp hook capture: {capture(_event(stdin), settings)}\n")
    except HookSkipped as e:
        stderr.write(f"milvus-memory-mcp hook capture: {e}\n")
    except Exception as e:  # a hook never fails the user's session
        stderr.write(f"milvus-memory-mcp hook capture: skipped ({type(e).__name__}: {e})\n")
    return 0


def _event(stdin: TextIO) -> dict[str, Any]:
    try:
        event = json.loads(stdin.read() or "{}")
    except ValueError:
        raise HookSkipped("the hook event on stdin is not JSON") from None
    if not isinstance(event, dict):
        raise HookSkipped("the hook event is not a JSON object")
    return event


def _ask_owner(data_dir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A request to the owner of `data_dir`; the tool result's structured content."""
    try:
        info = read_owner_info(data_dir)
    except ConfigurationError as e:
        raise HookSkipped(str(e)) from None
    if not isinstance(info.get("socket"), str):
        raise HookSkipped(f"no server owns {data_dir}")
    try:
        reply = exchange(str(info["socket"]), request, timeout)
    except (OSError, KeyError, TypeError, ValueError):
        raise HookSkipped(f"the server owning {data_dir} does not answer") from None
    if not isinstance(reply, dict) or "error" in reply:
        raise HookSkipped(str(reply.get("error") if isinstance(reply, dict) else "a malformed reply"))
    result = reply["result"]
    if result.get("isError"):
        raise HookSkipped(" ".join(c.get("text", "") for c in result.get("content", [])))
    return result.get("structuredContent") or {}


def recall(event: dict[str, Any], data_dir: Path, user: str, max_tokens: int) -> str:
    """The added context for the prompt, or "" when nothing relevant is stored."""
    prompt = event.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return ""
    arguments = {
        "query": prompt.strip()[:MAX_QUERY_CHARS],
        "user_id": user,
        "limit": RECALL_LIMIT,
        "threshold": EXAMPLE_THRESHOLD,
        "max_tokens": max_tokens,
    }
    found = _ask_owner(data_dir, {"op": "recall", "arguments": arguments}, RECALL_TIMEOUT)
    memories = [r["memory"] for r in found.get("results", []) if isinstance(r, dict) and r.get("memory")]
    if not memories:
        return ""
    # one line per memory: control characters in stored text (a newline too) are shown escaped
    lines = [f"Remembered about {one_line(user)} (milvus-memory-mcp; search_memories for more):"]
    return "\n".join(lines + [f"- {one_line(m)}" for m in memories])


def transcript_messages(path: Path) -> list[dict[str, str]]:
    """The user and assistant text of a Claude Code transcript (JSON lines), in order."""
    out: list[dict[str, str]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("isMeta") or entry.get("isSidechain"):
            continue
        message = entry.get("message")
        role = entry.get("type")
        if role not in ("user", "assistant") or not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        if isinstance(content, str) and content.strip():
            out.append({"role": role, "content": content.strip()})
    return out


def capture(event: dict[str, Any], settings: Settings) -> str:
    """Add the session's new messages with inference; what happened, in one line."""
    session = event.get("session_id")
    transcript = event.get("transcript_path")
    if not isinstance(session, str) or not session or not isinstance(transcript, str):
        raise HookSkipped("the event names no session_id and transcript_path")
    if settings.llm is None:
        raise HookSkipped(
            "no LLM is configured (MEMORY_LLM), so nothing is stored: a transcript is not a memory without "
            "inference to pick its facts"
        )
    if not settings.data_dir.is_dir():
        raise HookSkipped(f"no data dir {settings.data_dir}")
    user = settings.user_id
    if not user:
        raise HookSkipped("set MEMORY_USER_ID (the scope to remember in)")
    state = settings.data_dir / "hooks" / f"{hashlib.sha256(session.encode()).hexdigest()[:32]}.json"
    try:
        done = max(0, int(json.loads(state.read_text()).get("captured", 0)))
    except (OSError, ValueError, AttributeError):
        done = 0
    messages = transcript_messages(Path(transcript))
    if done >= len(messages):
        return f"nothing new in session {printable(session)}"
    size = min(CAPTURE_CHUNK, settings.max_messages)
    limit = settings.max_memory_bytes
    for m in messages[done:]:  # a message over the limit keeps its end (the latest part of a long turn)
        m["content"] = m["content"].encode()[-limit:].decode(errors="ignore")
    events: list[Any] = []
    notes: list[str] = []
    stored = 0
    failure = ""
    began = time.monotonic()
    shared, caller = shared_settings(settings), caller_to_json(Caller(actor="hook", default_user_id=user))
    for start in range(done, min(len(messages), done + size * MAX_CHUNKS), size):
        if stored and time.monotonic() - began > CAPTURE_BUDGET:
            break  # the time budget of a run is spent: the rest is for the next run
        chunk = messages[start : start + size]
        arguments = {
            "messages": chunk,
            "user_id": user,
            "infer": True,
            "metadata": {"source": "hook", "session_id": session[:128]},
        }
        request = {"op": "call", "settings": shared, "tool": "add_memory", "arguments": arguments, "caller": caller}
        try:
            result = _ask_owner(settings.data_dir, request, 300.0)
        except HookSkipped as e:
            if not stored:
                raise
            failure = str(e)  # what is stored stays recorded; the rest is for the next run
            break
        stored += len(chunk)
        _save_state(state, start + len(chunk))  # after each chunk: a run killed later loses nothing
        events += [r.get("event") for r in result.get("results", [])]
        if result.get("note"):
            notes.append(str(result["note"]))
    summary = ", ".join(f"{events.count(e)} {e}" for e in ("ADD", "UPDATE", "DELETE", "NONE") if e in events)
    line = f"session {printable(session)}: {stored} messages, {summary or 'nothing stored'}"
    if notes:
        line += f" ({' '.join(printable(n) for n in notes)})"
    left = len(messages) - done - stored
    if failure:
        line += f"; stopped: {printable(failure)}"
    if left:
        line += f"; {left} messages left for the next capture of this session"
    return line


def _save_state(state: Path, captured: int) -> None:
    """Record that the session's first `captured` transcript messages are stored (atomically)."""
    state.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"captured": captured}))
    os.replace(tmp, state)
