"""Child process of tests/e2e/test_crash.py: random writes through the core until it is killed.

Usage: python -m tests.support.crash_driver DATA_DIR SEED. Prints one JSON line per step to stdout:
{"step": "ready"}, then for each write {"step": "intent", ...} before the call and
{"step": "ack", ...} once it returned (an acknowledged write).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import anyio

from milvus_memory_mcp.core import writes as writes_module
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

USER = "crash"
WORDS = ["tennis", "piano", "Lisbon", "coffee", "hiking", "chess", "sushi", "Rust", "jazz", "gardening"]


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main(data_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    writes_module.APPLY_CHUNK = 3  # so that a delete_all reaches Milvus in several chunks
    scope = Scope(USER)
    async with MemoryService(Settings(data_dir=data_dir, flush_delay=0.02)) as svc:
        await svc.ready()
        live = [m.id for m in (await svc.list(scope, limit=1000)).results]
        emit(step="ready", live=len(live))
        n = 0
        while True:
            n += 1
            roll = rng.random()
            if roll < 0.45 or not live:
                count = 1 if rng.random() < 0.8 else 3
                batch = [f"Fact {seed}-{n}-{i}: likes {rng.choice(WORDS)}, {rng.choice(WORDS)}" for i in range(count)]
                emit(step="intent", op="add", texts=batch)
                result = await svc.add([{"role": "user", "content": t} for t in batch], scope)
                ids = [e.id for e in result.results]
                live.extend(ids)
                emit(step="ack", op="add", texts=batch, ids=ids)
            elif roll < 0.75:
                memory_id = rng.choice(live)
                text = f"Fact {seed}-{n} (updated): prefers {rng.choice(WORDS)}"
                emit(step="intent", op="update", id=memory_id, text=text)
                await svc.update(memory_id, text)
                emit(step="ack", op="update", id=memory_id, text=text)
            elif roll < 0.97 or len(live) < 4:
                memory_id = rng.choice(live)
                emit(step="intent", op="delete", id=memory_id)
                await svc.delete(memory_id)
                live.remove(memory_id)
                emit(step="ack", op="delete", id=memory_id)
            else:
                emit(step="intent", op="delete_all", ids=live)
                await svc.delete_all(scope, True)
                emit(step="ack", op="delete_all", ids=live)
                live = []


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
