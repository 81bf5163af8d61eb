"""Milvus Lite served to pymilvus over a Unix socket in the data dir, never over TCP.

pymilvus opens a `.db` URI through milvus-lite's server manager, which starts Lite's gRPC server
on a free port of 127.0.0.1 without authentication: any local account could then read and
delete every memory through it. Instead this module starts the same server (Lite's own servicer,
the same message-size limits) bound to `unix:<dir of the .db>/<name>.sock`, and the client
connects to that; connecting to a Unix socket needs write permission on it and search permission
on its directory, both private to the owner (0600 socket, 0700 data dir).

Lite 3.2.2 reads a collection's every data file into memory when a call first names it (about
430 MB at 100k memories, its indexes another 160 MB once loaded) and keeps it until the data dir
closes. Where the search index answers reads, `park` gives that memory back when writes pause;
the next call naming the collection reads it again (about 1 s at 100k memories).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any

from milvus_memory_mcp.errors import StoreUnavailable

logger = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024 * 1024  # what milvus-lite's own server allows
WORKERS = 10
SOCKET_PATH_MAX = 100  # AF_UNIX paths: 107 bytes on Linux, 103 on macOS


class LiteServer:
    """One Milvus Lite data dir and its gRPC server on a private Unix socket."""

    def __init__(self, db: Any, server: Any, socket_path: Path, tmpdir: Path | None) -> None:
        self._db = db
        self._server = server
        self.socket_path = socket_path
        self._tmpdir = tmpdir

    @property
    def uri(self) -> str:
        return f"unix:{self.socket_path}"

    @classmethod
    def start(cls, path: Path, parking: bool = False) -> LiteServer:
        """Open the Lite data dir `path` (the `.db`) and serve it; blocking (run it in a thread).
        `parking`: collections will be parked (the allocator is set for it)."""
        folder = path.expanduser().absolute().parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable(
                f"Cannot use {folder} for the Milvus Lite file: {e.strerror or e}. "
                "Set MEMORY_DATA_DIR or MEMORY_MILVUS_URI to a writable directory."
            ) from e
        # Lite 3.2.2 imports faiss (31 MB of RSS) for HNSW / IVF indexes only, and falls back to numpy
        # when it is absent; on Lite the store uses FLAT (its HNSW loses results under a scope
        # filter), so the import is blocked unless something else loaded faiss already.
        sys.modules.setdefault("faiss", None)  # type: ignore[assignment]
        # pyarrow's allocator (mimalloc, where Lite's tables live) hands freed pages back at once, not
        # after a delay: measured at 100k memories, reading the collection peaks at 380 MB instead of
        # 610 MB, and 30 MB less stays after it is parked. Read when pyarrow is first imported.
        for option in ("MIMALLOC_PURGE_DELAY", "MIMALLOC_ARENA_EAGER_COMMIT") if parking else ():
            os.environ.setdefault(option, "0")
        import grpc
        from milvus_lite import DataDirLockedError, MilvusLite
        from milvus_lite.adapter.grpc.servicer import MilvusServicer
        from pymilvus.grpc_gen import milvus_pb2_grpc

        path = path.expanduser().absolute()
        try:
            path.mkdir(mode=0o700, exist_ok=True)  # Lite would make it with the process umask
            db = MilvusLite(str(path))  # takes Lite's own lock first: a stale socket below is then ours
        except DataDirLockedError as e:
            raise StoreUnavailable(
                f"Could not open the Milvus Lite file {path}: another process holds it (only one process may "
                "open a Milvus Lite file). Stop the other server or set MEMORY_DATA_DIR / MEMORY_MILVUS_URI to "
                "another location."
            ) from e
        except Exception as e:  # OSError (read-only, full disk, permissions) or Lite's own errors
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise StoreUnavailable(f"Could not open the Milvus Lite file {path}: {reason}") from e
        tmpdir = None
        socket_path = path.with_name(path.name + ".sock")
        if len(os.fsencode(socket_path)) > SOCKET_PATH_MAX:
            tmpdir = Path(tempfile.mkdtemp(prefix="milvus-lite-"))  # private (0700)
            socket_path = tmpdir / "lite.sock"
        try:
            socket_path.unlink(missing_ok=True)  # left by a process that died
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=WORKERS),
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                    ("grpc.max_send_message_length", MAX_MESSAGE),
                    # pymilvus pings every 10 s, with or without calls; gRPC's default policy counts
                    # such pings as strikes and, after two, drops the connection ("too_many_pings",
                    # an error line on stderr about two minutes into every idle spell). The only
                    # client of this private socket is this process: its pings are all welcome.
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.max_ping_strikes", 0),
                ],
            )
            milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
            if not server.add_insecure_port(f"unix:{socket_path}"):
                raise OSError(f"cannot bind {socket_path}")
            os.chmod(socket_path, 0o600)  # connecting needs write permission: the owner's only
            server.start()
        except Exception as e:
            db.close()
            if tmpdir is not None:
                _remove_tree(tmpdir)
            raise StoreUnavailable(f"Could not serve the Milvus Lite file {path} on {socket_path}: {e}") from e
        logger.debug("Milvus Lite %s served on %s", path, socket_path)
        return cls(db, server, socket_path, tmpdir)

    def holds(self, collection: str) -> bool:
        """Whether Lite has this collection's data in memory (for tests and diagnostics)."""
        from milvus_lite.db import DEFAULT_DATABASE_NAME

        return (DEFAULT_DATABASE_NAME, collection) in getattr(self._db, "_collections", {})

    def park(self, collection: str) -> None:
        """Drop a collection's in-memory state (its data files and indexes) and give the memory
        back to the OS; blocking, and the caller excludes every other call to Lite meanwhile.

        Lite 3.2.2 has no call for this: its open collections are `MilvusLite._collections`; a
        `close` writes what its memtable holds and stops its background work (the data stays)."""
        from milvus_lite.db import DEFAULT_DATABASE_NAME

        opened = getattr(self._db, "_collections", None)
        if not isinstance(opened, dict) or (col := opened.pop((DEFAULT_DATABASE_NAME, collection), None)) is None:
            return
        col.close()
        del col
        release_free_memory()

    def close(self) -> None:
        """Stop the server and close the data dir (releases Lite's lock); blocking."""
        try:
            self._server.stop(grace=2).wait()
        finally:
            self._db.close()
            self.socket_path.unlink(missing_ok=True)
            if self._tmpdir is not None:
                _remove_tree(self._tmpdir)


def release_free_memory() -> None:
    """The freed heap back to the OS: glibc's, and pyarrow's pool (Lite's tables live there)."""
    import pyarrow

    from milvus_memory_mcp.heap import release_free_memory as trim

    pyarrow.default_memory_pool().release_unused()
    trim()


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
