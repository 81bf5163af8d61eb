"""One store, many server processes: the first process on a data dir owns the store, the others
forward their tool calls to it.

Milvus Lite lets one process open a file (a second open fails with DataDirLockedError) and its
writes must be serialised by one lock, so exactly one process may hold the store. The mechanism:

- `<data dir>/owner.lock` is held with `flock(LOCK_EX)` by the owning process for as long as it
  owns the store. The kernel releases it when that process exits or dies, so ownership never goes
  stale and needs no clean-up.
- The owner opens Milvus and SQLite and serves tool calls on a Unix socket (mode 0600) whose
  path it writes to `<data dir>/owner.json`.
- `hook recall` (server/hooks.py) asks for one read-only search (op `recall`), which the owner
  runs with its own settings: the hook process reads no settings model.
- The CLI's `stats`, `import` batches and `reembed` steps are owner operations (`run_op`).
- Every other process answers the MCP handshake and `tools/list` itself and forwards each
  `tools/call` (tool name, arguments, and its caller: bound scope, read-only, default user) over
  a fresh connection, one length-prefixed JSON frame each way (no size limit a legal reply can
  reach). The owner runs it through the same tools.
- A call that finds no owner (connection refused, or dropped mid-call because the owner exited)
  makes this process try the lock: the winner becomes the owner, the others reconnect to it. A
  dropped call is retried: every tool is idempotent (add_memory answers NONE for text already
  stored in the scope), and a write the old owner had committed to SQLite but not to Milvus is
  re-applied by the new owner when it opens the store (the pending marks, server/core/writes.py).
- Every wait is bounded: finding an owner (CONNECT_WINDOW), and each call (MEMORY_CALL_TIMEOUT).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp_types import CallToolResult, TextContent

from milvus_memory_mcp.errors import ConfigurationError, MemoryServiceError, StoreUnavailable
from milvus_memory_mcp.private import make_private_dir, read_owner_info
from milvus_memory_mcp.records import STATE_EVENTS, Caller, Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.wire import (
    FRAME_HEADER,
    MAX_FRAME,
    MAX_REQUEST,
    caller_from_json,
    caller_to_json,
    shared_settings,
)

logger = logging.getLogger(__name__)

CONNECT_WINDOW = 20.0  # how long a call looks for an owner (one may be starting or taking over)
MAX_RETRIES = 3  # calls dropped by an owner that went away
OWNER_OPS = ("stats", "import", "activity", "reembed_step")  # the owner's operations that are not tool calls (`run_op`)
SOCKET_PATH_MAX = 100  # AF_UNIX paths: 107 bytes on Linux, 103 on macOS

RunTool = Callable[[str, dict[str, Any], Caller], Awaitable[CallToolResult]]


class OwnerGone(Exception):
    """The owning process closed the connection before answering (it exited or died)."""


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def error_text(tool: str, result: CallToolResult) -> str:
    """A failed call's message as a person should read it (without the SDK's "Error executing tool" prefix)."""
    text = " ".join(getattr(c, "text", "") for c in result.content)
    return text.removeprefix(f"Error executing tool {tool}: ") or "The call failed."


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


async def send_frame(stream: SocketStream, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    await stream.send(FRAME_HEADER.pack(len(data)))
    await stream.send(data)


async def receive_frame(stream: SocketStream, limit: int = MAX_FRAME) -> Any:
    buffered = BufferedByteReceiveStream(stream)
    (size,) = FRAME_HEADER.unpack(await buffered.receive_exactly(FRAME_HEADER.size))
    if size > limit:
        raise FrameError(f"a frame of {size} bytes (more than {limit})")
    try:
        return json.loads(await buffered.receive_exactly(size))
    except ValueError as e:
        raise FrameError(f"a frame that is not JSON: {e}") from None


class SharedStore:
    """Owns `service` for this data dir, or forwards tool calls to the process that does."""

    def __init__(self, settings: Settings, service: MemoryService, run_tool: RunTool) -> None:
        self.settings = settings
        self.service = service
        self._run_tool = run_tool
        self._dir = settings.data_dir
        self._lock_path = self._dir / "owner.lock"
        self._info_path = self._dir / "owner.json"
        self._shared = shared_settings(settings)
        self._fd: int | None = None
        self._socket_path: Path | None = None
        self._tmpdir: Path | None = None
        self._tg: TaskGroup | None = None
        self._own_lock = anyio.Lock()
        self._started = False

    @property
    def is_owner(self) -> bool:
        return self._fd is not None

    async def __aenter__(self) -> SharedStore:
        """Serve other processes (once this one owns the store) until exit. The lock is given up by
        `release()`, which the app's lifespan calls after the service has closed the store, so the
        next owner can open it (server/app.py `serve`)."""
        self._tg = await anyio.create_task_group().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None

    # ownership

    def start(self) -> None:
        """Try to become the owner in the background (after the MCP handshake, or at HTTP start-up)."""
        if self._tg is not None and not self._started:
            self._started = True
            self._tg.start_soon(self._start)

    async def _start(self) -> None:
        try:
            if not await self.try_own():
                await self.service.standby()  # the owner embeds; started again if this process takes over
        except MemoryServiceError as e:
            logger.error("cannot take part in sharing %s: %s", self._dir, e)

    async def try_own(self) -> bool:
        """Become the owner if no other process is; True when this process owns the store."""
        async with self._own_lock:
            if self._fd is not None:
                return True
            try:
                make_private_dir(self._dir)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise StoreUnavailable(f"Cannot use the data dir {self._dir}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            try:
                await self._listen()
            except OSError as e:
                self.release()
                raise StoreUnavailable(f"Cannot serve the store of {self._dir} to other processes: {e}") from None
        logger.info("pid %d owns the store in %s, serving others on %s", os.getpid(), self._dir, self._socket_path)
        self.service.warm_up()
        return True

    async def _listen(self) -> None:
        assert self._tg is not None, "SharedStore used outside its context"
        path = self._dir / "owner.sock"
        if len(os.fsencode(path)) > SOCKET_PATH_MAX:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="milvus-memory-"))  # private (0700)
            path = self._tmpdir / "owner.sock"
        path.unlink(missing_ok=True)  # left by an owner that died: it would still hold the lock otherwise
        listener = await anyio.create_unix_listener(path, mode=0o600)
        self._socket_path = path
        tmp = self._info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"pid": os.getpid(), "socket": str(path)}))
        os.replace(tmp, self._info_path)
        self._tg.start_soon(listener.serve, self._handle)

    def release(self) -> None:
        """Give up ownership (remove the owner files, unlock); a no-op for a forwarding process."""
        if self._fd is None:
            return
        try:
            if self._owner_info().get("pid") == os.getpid():
                self._info_path.unlink(missing_ok=True)
            if self._socket_path is not None:
                self._socket_path.unlink(missing_ok=True)
        except (OSError, StoreUnavailable) as e:
            logger.warning("could not remove the owner files: %s", e)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        os.close(self._fd)  # releases the lock
        self._fd = None

    def _owner_info(self) -> dict[str, Any]:
        """What the owner wrote to owner.json (`private.read_owner_info`; StoreUnavailable when
        another account wrote it or owns the socket it names)."""
        try:
            return read_owner_info(self._dir)
        except ConfigurationError as e:
            raise StoreUnavailable(str(e)) from None

    # the owner's side

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                reply = await self._answer(stream)
            except Exception:  # one connection's top-level handler: the owner outlives any bad request
                logger.exception("a forwarded request failed")
                reply = {"error": "The process that owns the store failed on this call; see its log."}
            with anyio.move_on_after(10):
                try:
                    await send_frame(stream, reply)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # the forwarding process went away; it retries or its client is gone

    async def _answer(self, stream: SocketStream) -> dict[str, Any]:
        with anyio.fail_after(10):
            try:
                request = await receive_frame(stream, MAX_REQUEST)
            except FrameError as e:
                return {"error": f"The process that owns the store refused a request: {e}."}
        if request.get("op") == "recall":  # `hook recall`: a read-only search, run with this process's settings
            user = (request.get("arguments") or {}).get("user_id")
            caller = Caller(actor="hook", read_only=True, default_user_id=user if isinstance(user, str) else None)
            result = await self._run_tool("search_memories", dict(request.get("arguments") or {}), caller)
            return {"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
        theirs = request.get("settings") or {}
        if theirs != self._shared:
            differing = sorted(k for k in set(theirs) | set(self._shared) if theirs.get(k) != self._shared.get(k))
            names = ", ".join(f"MEMORY_{k.upper()}" for k in differing)
            return {
                "error": f"Another milvus-memory-mcp process (pid {os.getpid()}) serves {self._dir} with different "
                f"settings ({names}). Start every process on one data dir with the same settings, or use "
                "another MEMORY_DATA_DIR."
            }
        if request.get("op") == "status":
            return {"status": {"ready": self.service.is_ready, "pid": os.getpid()}}
        if request.get("op") in OWNER_OPS:
            try:
                return {"result": await self._run_op(str(request["op"]), request)}
            except MemoryServiceError as e:
                return {"error": str(e)}
        caller = caller_from_json(request["caller"])
        result = await self._run_tool(str(request["tool"]), dict(request.get("arguments") or {}), caller)
        return {"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}

    # the forwarding side

    async def call(
        self, tool: str, arguments: dict[str, Any], caller: Caller, run_here: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run one tool call where the store is: here when this process owns it (or can take it
        over), else in the owning process."""
        request = {
            "op": "call",
            "settings": self._shared,
            "tool": tool,
            "arguments": arguments,
            "caller": caller_to_json(caller),
        }
        try:
            for attempt in range(MAX_RETRIES + 1):
                if await self.try_own():
                    if request["arguments"] is not arguments:  # pinned by `_pin_undo` while forwarding
                        return await self._run_tool(tool, request["arguments"], caller)
                    return await run_here()
                try:
                    if tool == "restore_memory" and not arguments.get("event_id") and not await self._pin_undo(request):
                        continue  # this process became the owner meanwhile
                    reply = await self._exchange(request, self.settings.call_timeout, CONNECT_WINDOW)
                except OwnerGone:
                    logger.warning("the owning process went away during %s; retrying (%d)", tool, attempt + 1)
                    continue
                if reply is None:
                    continue  # this process became the owner meanwhile
                if "error" in reply:
                    return error_result(str(reply["error"]))
                return CallToolResult.model_validate(reply["result"])
        except MemoryServiceError as e:
            return error_result(str(e))
        return error_result(f"The processes serving {self._dir} kept exiting during this call; try again.")

    async def _pin_undo(self, request: dict[str, Any]) -> bool:
        """Name the event an undo (restore_memory without event_id: the state before the last change)
        goes back to, read from the owner first: a call retried after the owner went away must not
        undo the undo it may have committed (with the event named, a restore is idempotent). Once
        pinned, or when the history gives no state to pin (the owner's restore then says why), True;
        False when this process became the owner meanwhile."""
        if request["arguments"].get("event_id"):
            return True
        memory_id = request["arguments"].get("memory_id")
        ask = request | {"tool": "memory_history", "arguments": {"memory_id": memory_id, "verbose": True}}
        reply = await self._exchange(ask, self.settings.call_timeout, CONNECT_WINDOW)
        if reply is None:
            return False
        content = (reply.get("result") or {}).get("structuredContent") or {}
        events = content.get("events") if isinstance(content, dict) else None
        changes = [e for e in events or [] if isinstance(e, dict) and e.get("event") in STATE_EVENTS]
        if len(changes) >= 2 and changes[-2].get("event") != "DELETE" and isinstance(changes[-2].get("id"), str):
            request["arguments"] = {**request["arguments"], "event_id": changes[-2]["id"]}
        return True

    async def run_op(self, op: str, **payload: Any) -> Any:
        """One of the owner's operations that are not tool calls (OWNER_OPS: the CLI's `stats`, a
        batch of an `import`, a step of `reembed`), run in the process that owns the store (this one, if none does)."""
        for _ in range(MAX_RETRIES + 1):
            if await self.try_own():
                return await self._run_op(op, payload)
            try:
                request = {"op": op, "settings": self._shared, **payload}
                reply = await self._exchange(request, self.settings.call_timeout, CONNECT_WINDOW)
            except OwnerGone:
                continue
            if reply is None:
                continue  # this process became the owner meanwhile
            if "error" in reply:
                raise StoreUnavailable(str(reply["error"]))
            return reply["result"]
        raise StoreUnavailable(f"The processes serving {self._dir} kept exiting; try again.")

    async def _run_op(self, op: str, payload: dict[str, Any]) -> Any:
        if op == "stats":
            return await self.service.stats()
        if op == "activity":
            return await self.service.activity(Scope(**payload["scope"]), int(payload["days"]))
        if op == "reembed_step":
            step = (payload.get("embedder"), payload.get("dimensions"), payload.get("limit"))
            return await self.service.reembed_step(*step)
        return await self.service.import_batch(payload["lines"], payload["on_conflict"], payload["embedder"])

    async def status(self) -> dict[str, Any]:
        """Readiness for /health: this process's store, or the owner's (asked with a short timeout)."""
        if self.is_owner:
            return {"role": "owner", "ready": self.service.is_ready}
        try:
            reply = await self._exchange({"op": "status", "settings": self._shared}, 2.0, 2.0)
        except (OwnerGone, MemoryServiceError):
            reply = None
        if reply is None:
            return {"role": "owner" if self.is_owner else "forwarding", "ready": self.service.is_ready}
        if "error" in reply:
            return {"role": "forwarding", "ready": False, "error": reply["error"]}
        return {"role": "forwarding", "ready": bool(reply["status"]["ready"]), "owner_pid": reply["status"]["pid"]}

    async def _connect(self, window: float) -> SocketStream | None:
        """A connection to the owner, or None once this process became the owner itself."""
        deadline = anyio.current_time() + window
        delay = 0.02
        while True:
            path = self._owner_info().get("socket")
            if isinstance(path, str):
                try:
                    with anyio.fail_after(2):
                        return await anyio.connect_unix(path)
                except (OSError, TimeoutError):
                    pass  # no owner listening (yet, or any more)
            if await self.try_own():
                return None
            if anyio.current_time() > deadline:
                raise StoreUnavailable(
                    f"No milvus-memory-mcp process answers for {self._dir} within {window:g} s, although "
                    f"another process holds {self._lock_path}."
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _exchange(self, request: dict[str, Any], timeout: float, window: float) -> dict[str, Any] | None:
        stream = await self._connect(window)
        if stream is None:
            return None
        async with stream:
            try:
                await send_frame(stream, request)
                with anyio.fail_after(timeout):
                    reply = await receive_frame(stream)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError) as e:
                raise OwnerGone from e
            except FrameError as e:
                raise StoreUnavailable(f"The process that owns {self._dir} sent {e}.") from None
            except TimeoutError:
                pid = self._owner_info().get("pid", "?")
                raise StoreUnavailable(
                    f"The process that owns {self._dir} (pid {pid}) did not answer within {timeout:g} s "
                    "(MEMORY_CALL_TIMEOUT)."
                ) from None
        if not isinstance(reply, dict):
            raise StoreUnavailable("The process that owns the store sent a malformed reply.")
        return reply
