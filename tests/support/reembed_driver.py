"""Child process of tests/e2e/test_reembed.py: `reembed` steps through the core, SIGKILLed at a point.

Usage: python -m tests.support.reembed_driver POINT EMBEDDER DIMS (settings from MEMORY_* variables).
POINT is where the process kills itself:
- before: once the target collection is recorded, before it is made;
- during: at the third step, its rows written and flushed to the target but not recorded;
- switch: under the write lock, verified, just before the switch is recorded;
- switched: just after the switch is recorded, before this process serves the new collection;
- drop: serving the new collection, just before the old one is dropped.
It exits 0 if it finished without meeting the point.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio

from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

STEP = 10


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(point: str, embedder: str, dims: int) -> None:
    async with MemoryService(Settings.load()) as svc:
        history, vectors = svc.history, svc.vectors
        calls = {"record": 0}
        set_state, record, switch, drop = (
            history.set_store_state,
            history.record_reembedded,
            history.switch_collection,
            vectors.drop_collection,
        )

        async def set_store_state(values: dict[str, str | None], **kw: Any) -> None:
            await set_state(values, **kw)
            if point == "before" and values.get("target"):
                die()

        async def record_reembedded(*args: Any) -> None:
            calls["record"] += 1
            if point == "during" and calls["record"] == 3:
                die()
            await record(*args)

        async def switch_collection(*args: Any) -> None:
            if point == "switch":
                die()
            await switch(*args)
            if point == "switched":
                die()

        async def drop_collection(name: str) -> None:
            if point == "drop" and svc.embedder.model_id == embedder:
                die()
            await drop(name)

        history.set_store_state = set_store_state  # type: ignore[method-assign]
        history.record_reembedded = record_reembedded  # type: ignore[method-assign]
        history.switch_collection = switch_collection  # type: ignore[method-assign]
        vectors.drop_collection = drop_collection  # type: ignore[method-assign]
        while not (await svc.reembed_step(embedder, dims, STEP))["switched"]:
            pass


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
