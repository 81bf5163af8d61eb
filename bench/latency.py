"""Per-call latency with S memories in one scope, through the core and through an MCP client.

For each S: a data dir seeded with S memories of one user (bench/seed.py, vectors of the real
local model, cached), the product's MemoryService on it with its default embedder, and in the
same loop, interleaved call by call:
- the floor: the embedder's time for one query, and numpy brute-force cosine top-10 over the
  same S vectors;
- search_memories, add_memory, update_memory, list_memories through `MemoryService` and through
  a real MCP client session (`mcp.Client` on the server object, in memory);
- then a stdio spawn on a copy of the same data: first search_memories after spawn, and the
  server's RSS after it.

    python -m bench.latency --sizes 1000 10000 100000 --calls 40
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from typing import Any

import anyio
import numpy as np
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from .corpus import sentences
from .seed import USER, seeded_dir, seeded_vectors, settings_for
from .stats import p50, pct, table

QUESTIONS = [
    "What does {n} like to eat?",
    "When is the next exam?",
    "Where is the user travelling this year?",
    "Which programming languages does the user use at work?",
    "What pets does the user have?",
    "What sports does the user play on weekends?",
    "Any food allergies?",
    "Who does the user meet for coffee?",
]


def queries(count: int) -> list[str]:
    names = ["Alice", "Bob", "Chen", "Dana", "Emeka"]
    return [QUESTIONS[i % len(QUESTIONS)].format(n=names[i % len(names)]) + f" ({i})" for i in range(count)]


async def timed(samples: dict[str, list[float]], key: str, fn: Any, *args: Any) -> Any:
    t0, c0 = time.perf_counter(), time.process_time()
    out = await fn(*args)
    samples[key].append((time.perf_counter() - t0) * 1000)
    # CPU of the whole process (worker threads included): steadier than wall time on a shared machine.
    samples[f"{key} [cpu]"].append((time.process_time() - c0) * 1000)
    return out


async def mcp_call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return dict(result.structured_content)


async def measure(size: int, calls: int) -> dict[str, list[float]]:
    matrix = np.ascontiguousarray(seeded_vectors(size), dtype=np.float32)
    data_dir = seeded_dir(size)
    samples: dict[str, list[float]] = defaultdict(list)
    scope = Scope(user_id=USER)
    new_texts = iter(sentences(4 * calls + 8, seed=1000 + size))
    async with MemoryService(settings_for(data_dir)) as service:
        t0 = time.perf_counter()
        await service.ready()
        samples["open: ready() incl. imports"].append((time.perf_counter() - t0) * 1000)
        embedder = service.embedder
        async with Client(build_server(service)) as client:
            for q in queries(3):  # first calls pay one-time costs; not measured
                await service.search(q, scope)
                await mcp_call(client, "search_memories", {"query": q, "user_id": USER})

            for q in queries(calls):
                [qv] = await timed(samples, "floor: embed one query", embedder.embed, [q], "query")

                async def brute(v: list[float] = qv) -> Any:
                    scores = matrix @ np.asarray(v, dtype=np.float32)
                    top = np.argpartition(-scores, 10)[:10]
                    return top[np.argsort(-scores[top])]

                await timed(samples, "floor: numpy top-10", brute)
                await timed(samples, "search core", service.search, q, scope)
                await timed(samples, "search MCP", mcp_call, client, "search_memories", {"query": q, "user_id": USER})

            listed = (await service.list(scope, limit=calls)).results
            for _ in range(calls):
                await timed(samples, "add core", service.add, next(new_texts), scope)
                await timed(
                    samples, "add MCP", mcp_call, client, "add_memory", {"messages": next(new_texts), "user_id": USER}
                )
            await anyio.sleep(service.settings.flush_delay + 0.5)  # let the debounced flush run
            for i in range(calls):
                target = listed[i % len(listed)].id
                await timed(samples, "update core", service.update, target, next(new_texts))
                await timed(
                    samples,
                    "update MCP",
                    mcp_call,
                    client,
                    "update_memory",
                    {"memory_id": target, "data": next(new_texts)},
                )
            await anyio.sleep(service.settings.flush_delay + 0.5)
            for _ in range(calls):
                await timed(samples, "list core (100)", service.list, scope)
                await timed(samples, "list MCP (100)", mcp_call, client, "list_memories", {"user_id": USER})
            for q in queries(calls):  # search again after the writes above
                await timed(samples, "search core after writes", service.search, q, scope)
    shutil.rmtree(data_dir.parent)
    return samples


def spawn_probe(size: int) -> dict[str, float]:
    """A stdio server spawned on a copy of the seeded dir: first search after spawn, idle RSS."""
    from .startup import ROOT, run_once

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_") and k != "PYTHONDONTWRITEBYTECODE"}
    data_dir = seeded_dir(size)
    env.update({"MEMORY_DATA_DIR": str(data_dir), "MEMORY_LOG_LEVEL": "WARNING"})
    argv = [sys.executable, "-m", "milvus_memory_mcp", "serve"]
    del ROOT
    try:
        query = {"query": "What are the user's hobbies?", "user_id": USER}
        return run_once(argv, env, "search_memories", query, rss=True)
    finally:
        shutil.rmtree(data_dir.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--calls", type=int, default=40, help="calls measured per operation and size")
    parser.add_argument("--no-spawn", action="store_true", help="skip the stdio spawn (first search, RSS)")
    opts = parser.parse_args()

    rows: list[list[object]] = []
    summary: list[list[object]] = []
    for size in opts.sizes:
        seeded_dir(size, copy=False)  # seeds (once, cached) outside the measuring event loop
        samples = anyio.run(measure, size, opts.calls)
        for key, values in samples.items():
            if not key.endswith("[cpu]"):
                cpu = samples.get(f"{key} [cpu]", [])
                rows.append(
                    [size, key, f"{p50(values):.2f}", f"{pct(values, 0.95):.2f}", f"{p50(cpu):.2f}" if cpu else ""]
                )
        floor = p50(samples["floor: numpy top-10"]) + p50(samples["floor: embed one query"])
        probe = {} if opts.no_spawn else spawn_probe(size)
        summary.append(
            [
                size,
                f"{p50(samples['search core']):.1f}",
                f"{floor:.1f}",
                f"{p50(samples['search core']) / floor:.2f}x",
                f"{p50(samples['search MCP']):.1f}",
                f"{p50(samples['add core']):.1f}",
                f"{probe['first call']:.2f}" if probe else "",
                f"{probe['rss_mb']:.0f}" if probe else "",
                f"{probe['first write']:.2f}" if probe else "",
                f"{probe['rss_after_write_mb']:.0f} / {probe['peak_rss_mb']:.0f}" if probe else "",
            ]
        )
        print(f"  size {size} done", file=sys.stderr)

    print(f"\n{opts.calls} calls per operation and size, {os.cpu_count()} CPUs, times in ms (p50 / p95)\n")
    print(table(["S", "operation", "wall p50 ms", "wall p95 ms", "CPU p50 ms"], rows))
    print()
    print(
        table(
            [
                "S",
                "search core p50",
                "floor (embed + numpy) p50",
                "ratio",
                "search MCP p50",
                "add core p50",
                "stdio: first search s",
                "RSS after it MB",
                "then first add s",
                "RSS after it / peak MB",
            ],
            summary,
        )
    )
    print("\ntargets: 10k add p50 <= 15 ms, search ratio <= 2x; 100k search p50 <= 25 ms; RSS <= 400 MB")


if __name__ == "__main__":
    main()
