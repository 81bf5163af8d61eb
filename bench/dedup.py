"""Overhead of the no-LLM near-duplicate check on add_memory (real Milvus Lite, SQLite, MiniLM).

    python bench/dedup.py [--sizes 100,2000] [--adds 20] [--pause 0.7]

For each scope size it fills one user's scope, then times adds of new, distinct sentences with the
check on (infer omitted) and off (infer=false), interleaved, and the check's own search (top-1 in
scope, timed inside those adds). Adds are `--pause` seconds apart (an agent's pace; longer than the default 0.5 s flush
delay: a search that lands on Milvus Lite's debounced flush waits for it, ~15 ms more).
Prints medians in milliseconds. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from milvus_memory_mcp.embedders.local import LocalEmbedder  # noqa: E402
from milvus_memory_mcp.records import Scope  # noqa: E402
from milvus_memory_mcp.service import MemoryService  # noqa: E402
from milvus_memory_mcp.settings import Settings  # noqa: E402

WORDS = "tennis squash piano paris berlin exam dog cat coffee tea sushi hiking chess python rust jazz".split()


def sentence(i: int) -> str:
    a, b, c = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)], i
    return f"Fact {c}: likes {a} and talks about {b} on day {c % 28 + 1}"


def timing(fn: Any, out: list[float]) -> Any:
    async def timed(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return await fn(*args)
        finally:
            out.append(time.perf_counter() - t)

    return timed


async def run(sizes: list[int], adds: int, pause: float) -> None:
    embedder = LocalEmbedder()
    print(f"{'memories in scope':>18} {'add, check on':>14} {'add, check off':>15} {'overhead':>9} {'its search':>11}")
    for size in sizes:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            settings = Settings(data_dir=Path(tmp))
            async with MemoryService(settings, embedder=embedder) as svc:
                scope = Scope(user_id="bench")
                for start in range(0, size, 100):
                    batch = [{"role": "user", "content": sentence(i)} for i in range(start, min(size, start + 100))]
                    await svc.add(batch, scope, infer=False)
                await anyio.sleep(pause)  # let the debounced flush run
                on: list[float] = []
                off: list[float] = []
                search: list[float] = []
                svc._closest = timing(svc._closest, search)  # type: ignore[method-assign]
                for k in range(adds):
                    for infer, out in ((None, on), (False, off)):
                        text = f"New thing {k} {infer}: enjoys {WORDS[k % len(WORDS)]} with friend {k}"
                        t = time.perf_counter()
                        await svc.add(text, scope, infer=infer)
                        out.append(time.perf_counter() - t)
                        await anyio.sleep(pause)
                m_on, m_off, m_s = (statistics.median(x) * 1000 for x in (on, off, search))
                print(f"{size:>18} {m_on:>11.1f} ms {m_off:>12.1f} ms {m_on - m_off:>6.1f} ms {m_s:>8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,2000")
    parser.add_argument("--adds", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.7)
    args = parser.parse_args()
    anyio.run(run, [int(s) for s in args.sizes.split(",")], args.adds, args.pause)


if __name__ == "__main__":
    main()
