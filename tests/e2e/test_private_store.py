"""The store is private to the account running the server: no file or directory another local
account can read, and nothing of the store listening on a TCP port (Milvus Lite included)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

from ..support.processes import ROOT, read_until, rpc, search_once, server_env


def listening_tcp_ports(pid: int) -> list[int]:
    """TCP ports that process `pid` listens on (from its socket fds and /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if found := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(found[1])
    ports = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def open_to_others(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {mode:04o}")
    return found


def test_store_files_are_private_and_nothing_listens_on_tcp(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # as an earlier release left it under umask 022
    (data / "history.db").touch(mode=0o644)
    os.chmod(data / "history.db", 0o644)
    # The usual umask (the server must not rely on it), set by a shell that then execs the server:
    # a preexec_fn would run Python in a forked child of this multi-threaded test process (gRPC's
    # fork handlers abort such a child now and then).
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'umask 022 && exec "$0" "$@"', sys.executable, "-m", "milvus_memory_mcp", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(data),
        cwd=str(ROOT),
    )
    try:
        search_once(proc)
        add = {"name": "add_memory", "arguments": {"messages": "Keeps a diary", "user_id": "u"}}
        rpc(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": add})
        assert "result" in read_until(proc, 3, time.monotonic() + 60)
        time.sleep(0.5)  # the write-behind flush to Milvus Lite
        assert listening_tcp_ports(proc.pid) == []  # Milvus Lite's own server manager listened on 127.0.0.1
        assert (data / "milvus.db.sock").is_socket()
        assert open_to_others(data) == []
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    log = stderr.decode()
    assert re.search(r"data dir .*data was open to other accounts \(mode 0755\); now 0700", log), log
    assert re.search(r"history file .*history\.db was open to other accounts \(mode 0644\); now 0600", log), log
    assert open_to_others(data) == []
