"""`reembed` at scale: wall time and peak memory of the command, as a user runs it.

Seeds a data dir with N memories (ten users) under an OpenAI-compatible embedder served by the
test fake (tests/support/fake_openai.py, 384 dims, so seeding runs no model), then runs, as a
subprocess on a copy of it each: `reembed --embedder local` (every text embedded by the real
local model: the cost a user pays) and `reembed --embedder openai:text-embedding-3-small` to the
fake (what the store work alone costs). The bar is off (not a terminal).

    python -m bench.reembed --memories 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings
from tests.support.fake_openai import FakeOpenAI

from .transfer import run

OLD = {"MEMORY_EMBEDDER": "openai:model-a", "MEMORY_EMBEDDING_DIMS": "384", "OPENAI_API_KEY": "bench"}


async def seed(data_dir: Path, count: int) -> None:
    settings = Settings(
        data_dir=data_dir,
        embedder=OLD["MEMORY_EMBEDDER"],
        embedding_dims=384,
        log_level="WARNING",
        max_messages=1000,
        dedup_threshold=1.0,
    )
    async with MemoryService(settings) as svc:
        for start in range(0, count, 1000):
            msgs = [
                {"role": "user", "content": f"Fact {i}: likes item {i * 7919 % 10007} on day {i % 365}"}
                for i in range(start, min(count, start + 1000))
            ]
            await svc.add(msgs, Scope(user_id=f"user-{start // 1000 % 10}"), infer=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    n = parser.parse_args().memories
    work = Path(tempfile.mkdtemp(prefix="bench-reembed-"))
    source = work / "source"
    with FakeOpenAI(dims=384).running() as fake:
        os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench")
        t0 = time.perf_counter()
        anyio.run(seed, source, n)
        print(f"seeded {n} memories in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        for label, args in (
            ("reembed --embedder local", ["--embedder", "local"]),
            ("reembed to an API (fake)", ["--embedder", "openai:text-embedding-3-small", "--embedding-dims", "384"]),
        ):
            copy = work / label.split()[-1]
            shutil.copytree(source, copy)
            secs, mb, out = run(["reembed", *args], copy, OPENAI_BASE_URL=fake.base_url, **OLD)
            line = out.splitlines()[0]
            rows.append((label, secs, mb))
            print(line, file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{n} memories, ten users")
    print(f"{'command':<28} {'seconds':>8} {'peak RSS MB':>12}")
    for label, secs, mb in rows:
        print(f"{label:<28} {secs:>8.1f} {mb:>12.0f}")


if __name__ == "__main__":
    main()
