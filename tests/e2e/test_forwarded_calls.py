"""A call forwarded to the process that owns the data dir: retried when its reply is lost, it does
not do twice what it did once (an undo is not undone by its own retry); an owner file or data dir
of another account is refused."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from mcp import Client

from milvus_memory_mcp.wire import FRAME_HEADER, MAX_REQUEST, exchange

from ..conftest import call
from ..support.processes import run_cli, stop
from ..support.replicas import connect, spawn, wait_listening

pytestmark = pytest.mark.anyio


def receive(conn: socket.socket) -> dict[str, object]:
    (size,) = FRAME_HEADER.unpack(conn.recv(FRAME_HEADER.size, socket.MSG_WAITALL))
    return json.loads(conn.recv(size, socket.MSG_WAITALL))


def relay(listener: socket.socket, owner: str, drop_tool: str) -> None:
    """Pass requests to the owner's socket; the first call of `drop_tool` runs there (and commits),
    but its reply is lost, as when the owner goes away just after committing."""
    dropped = False
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        with conn:
            request = receive(conn)
            reply = exchange(owner, request, 60)
            if request.get("tool") == drop_tool and not dropped:
                dropped = True
                continue
            data = json.dumps(reply).encode()
            conn.sendall(FRAME_HEADER.pack(len(data)) + data)


async def test_an_undo_retried_after_its_reply_was_lost_is_applied_once(tmp_path: Path) -> None:
    owner = spawn(tmp_path / "data", {})
    listener = socket.socket(socket.AF_UNIX)
    try:
        wait_listening(owner)
        async with connect(owner) as client:
            memory = await add_and_update(client)
        info_path = owner.data_dir / "owner.json"
        info = json.loads(info_path.read_text())
        relay_path = str(tmp_path / "relay.sock")
        listener.bind(relay_path)
        listener.listen(4)
        threading.Thread(target=relay, args=(listener, info["socket"], "restore_memory"), daemon=True).start()
        info_path.write_text(json.dumps(info | {"socket": relay_path}))

        code, out, err = await run_cli(owner.data_dir, "restore", memory, "--json")
        assert code == 0, err
        assert json.loads(out)["memory"] == "Prefers window seats.", out
        assert "retrying" in err  # the lost reply was retried
        async with connect(owner) as client:
            events = (await call(client, "memory_history", memory_id=memory))["events"]
            assert [e["event"] for e in events] == ["ADD", "UPDATE", "RESTORE"]
            assert (await call(client, "get_memory", memory_id=memory))["memory"] == "Prefers window seats."
    finally:
        listener.close()
        stop(owner.proc)


async def add_and_update(client: Client) -> str:
    added = await call(client, "add_memory", messages="Prefers window seats.", user_id="alice", infer=False)
    memory = str(added["results"][0]["id"])
    await call(client, "update_memory", memory_id=memory, data="Prefers aisle seats.")
    return memory


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root")
async def test_a_data_dir_or_owner_file_of_another_account_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 4242, 4242)
    code, _, err = await run_cli(theirs, "list", "--user-id", "alice")
    assert code == 1 and "belongs to another account (uid 4242)" in err, err

    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    squatted = ours / "owner.json"
    squatted.write_text(json.dumps({"pid": 1, "socket": str(tmp_path / "elsewhere.sock")}))
    os.chown(squatted, 4242, 4242)
    with open(ours / "owner.lock", "w") as lock:  # held, as by a running owner
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = await run_cli(ours, "list", "--user-id", "alice")
    assert code == 1 and "The owner file" in err and "belongs to another account" in err, err


async def test_a_request_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    owner = spawn(tmp_path / "data", {})
    try:
        wait_listening(owner)
        async with connect(owner) as client:  # the first call makes the server the owner
            await call(client, "list_memories", user_id="alice")
        path = json.loads((owner.data_dir / "owner.json").read_text())["socket"]
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(path)
            sock.sendall(FRAME_HEADER.pack(MAX_REQUEST + 1))  # no body follows: the owner must not wait for it
            reply = receive(sock)
        assert "refused a request: a frame of" in str(reply.get("error")), reply
        async with connect(owner) as client:  # and it goes on serving
            assert (await call(client, "list_memories", user_id="alice"))["results"] == []
    finally:
        stop(owner.proc)
