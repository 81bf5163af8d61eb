"""kill -9 at random moments: every acknowledged write survives in both stores, nothing half-written.

A child process (tests/support/crash_driver.py) adds, updates and deletes through the core in a loop and
reports each write before the call ("intent") and after it returned ("ack"). The test kills it
with SIGKILL at a random moment, restarts the service on the same data dir, and checks the result
against a model built from the acknowledgements: the one write in flight may or may not have
happened, but entirely or not at all, in both stores and in the history.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from milvus_memory_mcp import doctor, filters
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import make_settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
DEADLINE_S = 240  # a hang fails the test instead of stalling CI
USER = "crash"


@dataclass
class Model:
    """What the acknowledged writes say the store holds."""

    text: dict[str, str | None] = field(default_factory=dict)  # id -> text, None once deleted
    events: dict[str, list[str]] = field(default_factory=dict)  # id -> history events

    def live(self) -> dict[str, str]:
        return {k: v for k, v in self.text.items() if v is not None}

    def apply(self, step: dict[str, Any]) -> None:
        op = step["op"]
        if op == "add":
            for memory_id, text in zip(step["ids"], step["texts"], strict=True):
                self.text[memory_id], self.events[memory_id] = text, ["ADD"]
        elif op == "update":
            self.text[step["id"]] = step["text"]
            self.events[step["id"]].append("UPDATE")
        else:
            for memory_id in [step["id"]] if op == "delete" else step["ids"]:
                self.text[memory_id] = None
                self.events[memory_id].append("DELETE")


class Child:
    """The driver process and the JSON lines it printed."""

    def __init__(self, data_dir: Path, seed: int, log: Path) -> None:
        self.steps: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.crash_driver", str(data_dir), str(seed)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            env={k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                step = json.loads(line)
            except ValueError:
                break  # a line cut short by the kill was never acknowledged
            self.steps.append(step)
            if step["step"] == "ready":
                self.ready.set()

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        self._log.close()
        return code


def resolve_in_flight(model: Model, step: dict[str, Any] | None, live: dict[str, str], why: str) -> None:
    """The write in flight at the kill happened entirely or not at all; fold its outcome into the model."""
    if step is None:
        return
    op, before = step["op"], model.live()
    if op == "add":
        new = {k: v for k, v in live.items() if k not in model.text}
        assert sorted(new.values()) in ([], sorted(step["texts"])), f"half-applied add {new} {why}"
        if new:
            model.apply({"op": "add", "ids": list(new), "texts": list(new.values())})
    elif op == "update":
        assert live.get(step["id"]) in (before[step["id"]], step["text"]), why
        if live.get(step["id"]) == step["text"]:
            model.apply(step)
    elif op == "delete":
        if step["id"] not in live:
            model.apply(step)
    else:
        gone = [i for i in step["ids"] if i not in live]
        assert gone in ([], step["ids"]), f"delete_all half-applied: {len(gone)} of {len(step['ids'])} {why}"
        if gone:
            model.apply(step)


async def verify(svc: MemoryService, model: Model, in_flight: dict[str, Any] | None, why: str) -> None:
    live = {r.id: r.memory for r in await svc.history.list_live(filters.scope_conditions(Scope(USER)), None)}
    resolve_in_flight(model, in_flight, live, why)
    assert live == model.live(), f"acknowledged state differs {why}"
    for memory_id, expected in model.events.items():
        entries = await svc.history.history(memory_id)
        assert [e.event for e in entries] == expected, f"history of {memory_id} {why}"
        for previous, entry in zip(entries, entries[1:], strict=False):
            assert entry.old_memory == previous.new_memory, f"history chain of {memory_id} {why}"
        if model.text[memory_id] is not None:
            assert entries[-1].new_memory == model.text[memory_id], why
    report = await doctor.check(svc)
    assert report.clean, f"{report.lines()} {why}"


async def test_sigkill_at_random_moments_loses_no_acknowledged_write_and_leaves_stores_agreeing(
    tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    settings = make_settings(tmp_path / "data")
    model = Model()
    started = time.monotonic()
    recovered = acknowledged = 0
    for kill in range(KILLS):
        why = f"(seed {seed}, kill {kill}; child log {tmp_path}/child{kill}.log)"
        assert time.monotonic() - started < DEADLINE_S, f"too slow {why}"
        child = Child(settings.data_dir, rng.randrange(1_000_000), tmp_path / f"child{kill}.log")
        if kill % 4 == 3:
            await anyio.sleep(rng.uniform(0.3, 2.5))  # maybe during start-up and its recovery
        else:
            ready = await anyio.to_thread.run_sync(child.ready.wait, 60)
            assert ready, f"child never got ready {why}"
            await anyio.sleep(rng.uniform(0.05, 0.7))
        assert child.kill() == -signal.SIGKILL, why
        intents = [s for s in child.steps if s["step"] == "intent"]
        acks = [s for s in child.steps if s["step"] == "ack"]
        assert len(intents) - len(acks) in (0, 1), why
        for ack in acks:
            model.apply(ack)
        acknowledged += len(acks)
        in_flight = intents[-1] if len(intents) > len(acks) else None

        async with MemoryService(settings, embedder=local_embedder) as svc:
            await svc.history.open()
            recovered += len(await svc.history.pending_ids())
            await svc.ready()  # the restart: re-applies what the killed process left pending
            await verify(svc, model, in_flight, why)
    print(f"crash test: seed {seed}, {KILLS} kills, {acknowledged} acknowledged writes, ", end="")
    print(f"{recovered} pending marks re-applied, {time.monotonic() - started:.0f} s")
    assert acknowledged > KILLS  # the children did work between the kills


async def test_index_file_cut_short_by_a_kill_is_rebuilt_at_open(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    # Seen in this crash test: Milvus Lite 3.2.2 killed while writing an index file leaves it
    # empty, and every later load failed with "No data left in file".
    settings = make_settings(tmp_path)
    async with MemoryService(settings, embedder=local_embedder) as svc:
        await svc.add("Survives a broken index", make_scope())
        # Behind the search index Lite's collection is loaded (its index files written) by reads only.
        assert (await doctor.check(svc)).clean
    indexes = list((Path(settings.resolved_milvus_uri) / "collections").glob("*/partitions/*/indexes/*.idx"))
    assert indexes
    for index in indexes:
        index.write_bytes(b"")
    async with MemoryService(settings, embedder=local_embedder) as svc:
        hits = (await svc.search("broken index", make_scope())).results
        assert [h.memory for h in hits] == ["Survives a broken index"]
        assert (await doctor.check(svc)).clean


def make_scope() -> Scope:
    return Scope(user_id=USER)
