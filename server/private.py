"""Keep the store private to the account that runs the server.

The data dir is created 0700 and the files in it 0600 (the server process runs with umask 077,
and the code that creates them asks for those modes itself). A data dir, history file or Milvus
Lite dir left readable by others by an earlier release is tightened at start, with a log line.
A data dir that belongs to another account is refused, and so are an `owner.json` or an owner's
socket that do (`check_owned`): another account could have made them to receive this account's
calls (its memories, a hook's prompts) and answer them.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_memory_mcp.errors import ConfigurationError

if TYPE_CHECKING:  # `hook recall` imports this module: it stays light
    from milvus_memory_mcp.settings import Settings

logger = logging.getLogger(__name__)

UMASK = 0o077


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700; an existing directory is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite then gives its -wal and -shm
    files the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _tighten(path: Path, mode: int, what: str) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # missing, or unusable: opening the store reports that, with what to do
    if not current & 0o077:
        return
    try:
        os.chmod(path, current & mode)
    except OSError as e:
        logger.warning(
            "%s %s is open to other accounts (mode %04o) and could not be tightened: %s",
            what,
            path,
            current,
            e.strerror or e,
        )
        return
    logger.warning("%s %s was open to other accounts (mode %04o); now %04o", what, path, current, current & mode)


def owner_of(path: Path) -> int | None:
    """The uid `path` belongs to (None when it is not there)."""
    try:
        return path.stat().st_uid
    except OSError:
        return None


def check_owned(path: Path, what: str) -> None:
    """ConfigurationError when `path` exists and belongs to another account than this process's."""
    uid = owner_of(path)
    if uid is not None and uid != os.geteuid():
        raise ConfigurationError(
            f"{what} {path} belongs to another account (uid {uid}), which could read and answer this "
            "account's memory calls: use a data dir of your own (MEMORY_DATA_DIR)."
        )


def read_owner_info(data_dir: Path) -> dict[str, Any]:
    """What the process owning `data_dir` wrote to its owner.json ({} when there is none, or it is
    unreadable); ConfigurationError when another account wrote it or owns the socket it names."""
    path = data_dir / "owner.json"
    check_owned(path, "The owner file")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    if isinstance(info.get("socket"), str):
        check_owned(Path(info["socket"]), "The owner's socket")
    return info


def secure_store(settings: Settings) -> None:
    """At start: refuse a data dir of another account; tighten the data dir, the history database
    and the Milvus Lite dir if others can reach them. A directory that is not there yet is created
    0700 later, by whoever needs it."""
    check_owned(settings.data_dir, "The data dir")
    _tighten(settings.data_dir, 0o700, "data dir")
    history = settings.resolved_history_path
    for path in (history, history.with_name(history.name + "-wal"), history.with_name(history.name + "-shm")):
        _tighten(path, 0o600, "history file")
    if settings.milvus_is_lite:
        _tighten(Path(settings.resolved_milvus_uri).expanduser(), 0o700, "Milvus Lite dir")
