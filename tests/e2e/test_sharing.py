"""Several stdio server processes on one data dir: one owns the store, the others forward to it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from ..conftest import call, error_of
from ..support.processes import params

pytestmark = pytest.mark.anyio
PER_PROCESS = 100


def owner_pid(data_dir: Path) -> int:
    return int(json.loads((data_dir / "owner.json").read_text())["pid"])


async def add_many(
    client: Client, process: int, acked: dict[str, str], stop_after: int = PER_PROCESS, sent: set[str] | None = None
) -> int:
    """Add memories one by one; record each acknowledged id with its text (and in `sent` each text
    before it is sent); return how many were acked."""
    done = 0
    for n in range(stop_after):
        text = f"process {process} remembers fact number {n}"
        if sent is not None:
            sent.add(text)
        result = (await call(client, "add_memory", messages=text, user_id="team"))["results"][0]
        assert result["memory"] == text
        acked[result["id"]] = text
        done += 1
    return done


async def check_all_present(
    client: Client, acked: dict[str, str], *, history: bool = True, in_flight: set[str] = frozenset()
) -> None:
    """Every acknowledged memory is stored, and nothing else but writes in flight when a process died
    (committed before the kill, their answer lost with it)."""
    page = await call(client, "list_memories", user_id="team", limit=1000)
    listed = {m["id"]: m["memory"] for m in page["results"]}
    assert {i: listed.get(i) for i in acked} == acked
    extra = {i: text for i, text in listed.items() if i not in acked}
    assert set(extra.values()) <= in_flight and len(extra) == len(set(extra.values())), extra
    for memory_id in acked if history else ():
        events = (await call(client, "memory_history", memory_id=memory_id))["events"]
        assert [e["event"] for e in events] == ["ADD"]


async def test_three_processes_on_one_data_dir_add_concurrently_and_lose_nothing(tmp_path: Path) -> None:
    acked: dict[str, str] = {}
    with anyio.fail_after(240):
        async with (
            Client(params(tmp_path), read_timeout_seconds=60) as a,
            Client(params(tmp_path), read_timeout_seconds=60) as b,
            Client(params(tmp_path), read_timeout_seconds=60) as c,
        ):
            counts: list[int] = []

            async def run(i: int, client: Client) -> None:
                counts.append(await add_many(client, i, acked))

            async with anyio.create_task_group() as tg:
                for i, client in enumerate((a, b, c)):
                    tg.start_soon(run, i, client)
            assert counts == [PER_PROCESS] * 3
            assert len(acked) == 3 * PER_PROCESS
            for i, client in enumerate((a, b, c)):  # every process sees the same store
                await check_all_present(client, acked, history=i == 0)


async def test_killing_the_owner_mid_run_lets_the_others_carry_on_with_nothing_acknowledged_lost(
    tmp_path: Path,
) -> None:
    acked: dict[str, str] = {}
    sent: set[str] = set()
    finished: dict[int, int] = {}
    died: list[int] = []
    with anyio.fail_after(240):
        async with (
            Client(params(tmp_path), read_timeout_seconds=60) as a,
            Client(params(tmp_path), read_timeout_seconds=60) as b,
            Client(params(tmp_path), read_timeout_seconds=60) as c,
        ):
            clients = (a, b, c)
            for client in clients:  # every process is up and one owns the store
                await call(client, "list_memories", user_id="team")
            victim = owner_pid(tmp_path)

            async def run(i: int, client: Client) -> None:
                try:
                    finished[i] = await add_many(client, i, acked, sent=sent)
                except MCPError:
                    died.append(i)  # this client's server was the owner we killed

            async def kill_owner_mid_run() -> None:
                while len(acked) < 60:
                    await anyio.sleep(0.01)
                os.kill(victim, signal.SIGKILL)

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_owner_mid_run)
                for i, client in enumerate(clients):
                    tg.start_soon(run, i, client)

            assert len(died) == 1, (died, finished)
            survivors = [i for i in range(3) if i not in died]
            assert all(finished[i] == PER_PROCESS for i in survivors)
            assert owner_pid(tmp_path) != victim  # a survivor took the store over
            for n, i in enumerate(survivors):
                await check_all_present(clients[i], acked, history=n == 0, in_flight=sent - set(acked.values()))


async def test_a_process_with_other_store_settings_is_refused_by_name(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with Client(params(tmp_path), read_timeout_seconds=60) as owner:
            await call(owner, "add_memory", messages="Owner's memory", user_id="u")
            async with Client(params(tmp_path, MEMORY_COLLECTION="other"), read_timeout_seconds=60) as other:
                message = await error_of(other, "list_memories", user_id="u")
    assert "MEMORY_COLLECTION" in message and "different settings" in message


async def test_each_process_applies_its_own_default_user(tmp_path: Path) -> None:
    args: dict[str, Any] = {"messages": "Prefers tea"}
    with anyio.fail_after(120):
        async with (
            Client(params(tmp_path, MEMORY_USER_ID="ann"), read_timeout_seconds=60) as ann,
            Client(params(tmp_path, MEMORY_USER_ID="ben"), read_timeout_seconds=60) as ben,
        ):
            await call(ann, "add_memory", **args)
            await call(ben, "add_memory", **args)
            assert [m["user_id"] for m in (await call(ann, "list_memories", verbose=True))["results"]] == ["ann"]
            assert [m["user_id"] for m in (await call(ben, "list_memories", verbose=True))["results"]] == ["ben"]
