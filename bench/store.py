"""The vector store alone: the product's MilvusStore search at S rows, next to numpy.

Measures whichever milvus-lite is installed (run it from two virtualenvs to compare releases):
S rows (the cached corpus vectors) in one user's scope plus `--others` rows of other users,
written through `MilvusStore.upsert` and flushed, then `MilvusStore.search` with the scope
filter, interleaved with numpy brute-force cosine top-10 over the same scope's vectors. CPU is
counted for this process and its children (milvus-lite 2.5 runs its engine in a child).

    python -m bench.store --sizes 10000 100000 --calls 40
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import anyio
import numpy as np

from milvus_memory_mcp import filters
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.errors import MemoryServiceError
from milvus_memory_mcp.records import MemoryRecord, Scope, now_us, text_hash
from milvus_memory_mcp.stores.milvus import MilvusStore

from .corpus import corpus
from .seed import REAL_AT_LEAST, USER
from .stats import p50, pct, table

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu() -> float:
    """CPU seconds used by this process and its live children (user + system)."""
    me = os.getpid()
    total = time.process_time()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


async def measure(size: int, others: int, calls: int) -> dict[str, list[float]]:
    texts, vectors = corpus(size + others, synthetic_after=REAL_AT_LEAST)
    workdir = Path(tempfile.mkdtemp(prefix="bench-store-"))
    store = MilvusStore(str(workdir / "milvus.db"), "bench")
    out: dict[str, list[float]] = {"search": [], "search [cpu]": [], "numpy": [], "insert s": [], "open s": []}
    await store.open(LocalEmbedder.model_id, LocalEmbedder.dimensions)
    ts = now_us()
    t0 = time.perf_counter()
    for start in range(0, size + others, 2000):
        rows = []
        for i in range(start, min(start + 2000, size + others)):
            user = USER if i < size else f"other-{i % 50}"
            rec = MemoryRecord(
                id=f"m{i:07d}",
                memory=texts[i],
                hash=text_hash(texts[i]),
                metadata={},
                user_id=user,
                agent_id=None,
                run_id=None,
                created_at=ts,
                updated_at=ts,
            )
            rows.append((rec, vectors[i].tolist()))
        await store.upsert(rows)
    await store.flush()
    out["insert s"].append(time.perf_counter() - t0)
    matrix = np.ascontiguousarray(vectors[:size])
    where = filters.scope_conditions(Scope(user_id=USER))
    rng = np.random.default_rng(3)
    for n in range(calls + 3):
        q = vectors[int(rng.integers(0, size))] + rng.normal(0, 0.05, vectors.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        t0, c0 = time.perf_counter(), tree_cpu()
        hits = await store.search(q.tolist(), where, 10)
        wall, cpu = time.perf_counter() - t0, tree_cpu() - c0
        t1 = time.perf_counter()
        scores = matrix @ q
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        floor = time.perf_counter() - t1
        assert len(hits) == 10 and hits[0][0].id == f"m{top[0]:07d}", "store and numpy disagree on the best hit"
        if n >= 3:  # the first searches pay one-time costs
            out["search"].append(wall * 1000)
            out["search [cpu]"].append(cpu * 1000)
            out["numpy"].append(floor * 1000)
    await store.close()
    # Reopen, as a server start does: the load time grows with S.
    reopened = MilvusStore(store._uri, "bench")  # noqa: SLF001 - the same file
    t0 = time.perf_counter()
    try:
        await reopened.open(LocalEmbedder.model_id, LocalEmbedder.dimensions)
        out["open s"].append(time.perf_counter() - t0)
    except MemoryServiceError as e:
        print(f"  reopen failed: {e}", file=sys.stderr)
        out["open s"].append(float("nan"))
    await reopened.close()
    shutil.rmtree(workdir)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--others", type=int, default=0, help="rows of other users next to the scope's S rows")
    parser.add_argument("--calls", type=int, default=40)
    opts = parser.parse_args()
    rows = []
    for size in opts.sizes:
        r = anyio.run(measure, size, opts.others, opts.calls)
        rows.append(
            [
                size,
                opts.others,
                f"{p50(r['search']):.1f}",
                f"{pct(r['search'], 0.95):.1f}",
                f"{p50(r['search [cpu]']):.1f}",
                f"{p50(r['numpy']):.2f}",
                f"{p50(r['search']) / p50(r['numpy']):.1f}x",
                f"{r['insert s'][0]:.1f}",
                f"{r['open s'][0]:.2f}",
            ]
        )
        print(f"  size {size} done", file=sys.stderr)
    print(f"\nmilvus-lite {version('milvus-lite')}, pymilvus {version('pymilvus')}, {opts.calls} searches, top-10\n")
    print(
        table(
            [
                "S",
                "other rows",
                "search p50 ms",
                "p95 ms",
                "CPU p50 ms",
                "numpy p50 ms",
                "ratio",
                "insert s",
                "reopen s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
