"""Where `export` writes its JSON Lines: a file, written whole or not at all, or stdout.

A regular file (new or existing) is written as a temporary file beside it, renamed over it once
complete: a failure part way (a full disk, Ctrl-C) leaves no partial file, and an existing file as
it was. Anything else that exists there (/dev/stdout, a FIFO) is written in place. A path that
cannot be written is an `OutputFailed` naming it and why, before anything is read. Every write
goes through `terminal.json_text`: the same JSON, nothing a terminal acts on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

from milvus_memory_mcp.terminal import json_text, printable


class OutputFailed(Exception):
    """The output cannot be written: the message names the path and the reason."""

    def __init__(self, path: str, reason: OSError | int) -> None:
        why = os.strerror(reason) if isinstance(reason, int) else reason.strerror or str(reason)
        super().__init__(f"cannot write {printable(path)}: {why}")


class _JsonStream:
    """The text stream `export` writes to (it only calls `write`)."""

    def __init__(self, out: TextIO, path: str) -> None:
        self._out, self._path = out, path

    def write(self, text: str) -> int:
        try:
            return self._out.write(json_text(text))
        except OSError as e:
            raise OutputFailed(self._path, e) from None


@contextlib.contextmanager
def json_output(path: str | None) -> Iterator[TextIO]:
    """A stream for JSON text to `path` (stdout when None); OutputFailed when it cannot be written."""
    if not path:
        yield cast(TextIO, _JsonStream(sys.stdout, "stdout"))
        return
    target = Path(os.path.realpath(path))  # a symlink's file is replaced, not the link
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise OutputFailed(path, e) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputFailed(path, errno.EISDIR)
    if mode is not None and not stat.S_ISREG(mode):  # a device or a pipe: written in place
        try:
            special = target.open("w", encoding="utf-8")
        except OSError as e:
            raise OutputFailed(path, e) from None
        with special:
            yield cast(TextIO, _JsonStream(special, path))
        return
    if mode is not None and not os.access(target, os.W_OK):
        raise OutputFailed(path, errno.EACCES)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as e:
        raise OutputFailed(path, e) from None
    part = Path(name)
    out = os.fdopen(fd, "w", encoding="utf-8")
    try:
        yield cast(TextIO, _JsonStream(out, path))
        try:
            out.close()
            os.replace(part, target)
        except OSError as e:
            raise OutputFailed(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            out.close()
        part.unlink(missing_ok=True)
        raise
