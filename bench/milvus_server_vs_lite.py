"""Add and search latency through `MilvusStore` on Milvus Lite vs a real Milvus 2.3.5 standalone,
and the server's resident memory per stored memory at 384 and 1536 dims.

    python -m bench.milvus_server_vs_lite [--rows 10000] [--users 100] [--samples 200]

Vectors are random unit vectors (the embedder is the same on both engines and is left out);
`--rows` memories over `--users` users; each search filters on one user_id, like the tools do.
Both engines are flushed after the preload (steady state: sealed, indexed segments).
Numbers are noisy on a shared machine: compare the two columns, not absolute values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import numpy as np

from milvus_memory_mcp import filters
from milvus_memory_mcp.records import MemoryRecord, Scope, now_us, text_hash
from milvus_memory_mcp.stores.milvus import MilvusStore
from tests.support.milvus_server import MilvusStandalone


def synthetic_rows(
    n: int, dims: int, users: int, rng: np.random.Generator, start: int = 0
) -> list[tuple[MemoryRecord, list[float]]]:
    """`n` memories numbered from `start` over `users` users, with random unit vectors."""
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for k in range(n):
        i = start + k
        text = f"memory number {i} about topic {i % 97}"
        ts = now_us()
        record = MemoryRecord(
            id=str(uuid.uuid4()),
            memory=text,
            hash=text_hash(text),
            metadata={"i": i},
            user_id=f"u{i % users}",
            agent_id=None,
            run_id=None,
            created_at=ts,
            updated_at=ts,
        )
        out.append((record, vectors[k].tolist()))
    return out


def _pct(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1000:6.1f} ms  p95 {xs[int(len(xs) * 0.95) - 1] * 1000:6.1f} ms"


async def measure(store: MilvusStore, rows: int, users: int, samples: int, dims: int) -> dict[str, str]:
    rng = np.random.default_rng(7)
    await store.open("bench", dims)
    data = synthetic_rows(rows, dims, users, rng)
    for start in range(0, rows, 1000):
        await store.upsert(data[start : start + 1000])
    await store.flush()
    adds, searches = [], []
    extra = synthetic_rows(samples, dims, users, rng)
    for row in extra:
        t = time.perf_counter()
        await store.upsert([row])
        adds.append(time.perf_counter() - t)
    for i in range(samples):
        query = data[(i * 37) % rows][1]
        t = time.perf_counter()
        await store.search(query, filters.scope_conditions(Scope(user_id=f"u{i % users}")), 10)
        searches.append(time.perf_counter() - t)
    return {"add (1 memory)": _pct(adds), "search (top 10, one user)": _pct(searches)}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lite = MilvusStore(str(Path(tmp) / "lite.db"), "bench")
        lite_numbers = await measure(lite, args.rows, args.users, args.samples, 384)
        await lite.close()

        server = MilvusStandalone(Path(tmp) / "server")
        await anyio.to_thread.run_sync(server.start)
        try:
            assert server.pid is not None
            remote = MilvusStore(server.uri, "bench", server.token)
            server_numbers = await measure(remote, args.rows, args.users, args.samples, 384)
            print(f"\n{args.rows} memories, {args.users} users, {args.samples} samples, 384 dims")
            print(f"{'':28}{'Milvus Lite 3.2.2 (FLAT)':36}Milvus 2.3.5 standalone (AUTOINDEX)")
            for key in lite_numbers:
                print(f"{key:28}{lite_numbers[key]:36}{server_numbers[key]}")
            print(f"server capabilities: {remote.capabilities.describe()}")
            await remote.close()

            print("\nserver RSS growth (loaded, sealed and indexed):")
            for dims in (384, 1536):
                before = _rss_mb(server.pid)
                store = MilvusStore(server.uri, f"size_{dims}", server.token)
                await measure(store, args.rows, args.users, 5, dims)
                await anyio.sleep(5)  # let index building settle
                grown = _rss_mb(server.pid) - before
                # At small sizes this is dominated by a fixed per-collection cost: compare the two dims.
                print(f"  {dims:5} dims: +{grown:7.1f} MB for {args.rows} memories")
                await store.close()
        finally:
            server.stop()


if __name__ == "__main__":
    anyio.run(main)
