"""The Milvus server path with read-your-writes: search and add latency at 10k memories, a search
right after another client's write or delete, and a growth curve (load time, search p50/p95,
server RSS) on a real Milvus 2.3.5 standalone with the history in a real PostgreSQL.

    python -m bench.server_path [--rows 10000] [--samples 200] [--sizes 100000,300000,1000000]
                                [--budget-min 60]

Store level, as the write protocol drives it: `MilvusStore.upsert` / `delete`, then the store's
`write_ts` recorded in PostgreSQL (`note_vector_ts`); each search reads the recorded timestamp from
PostgreSQL and waits for it on the server (stores/milvus_client.py `WriteClock`). The embedder is
left out (the same on every path). Vectors are random 384-d unit vectors, generated batch by batch;
each search filters on one user_id, like the tools do. "Another client" is a second `MilvusStore` on
its own connection with its own clock, which learns of the writer's writes only through PostgreSQL:
what a replica on another machine sees. Numbers are noisy on a shared machine (see `uptime`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from milvus_memory_mcp import filters
from milvus_memory_mcp.history import HistoryStore, make_history
from milvus_memory_mcp.records import MemoryRecord, Scope, scope_terms
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores.milvus import MilvusStore
from tests.support.milvus_server import MilvusStandalone
from tests.support.postgres_server import PostgresServer

from .milvus_server_vs_lite import synthetic_rows

DIMS = 384
BATCH = 1000


def _batch(start: int, n: int, users: int, rng: np.random.Generator) -> list[tuple[MemoryRecord, list[float]]]:
    return synthetic_rows(n, DIMS, users, rng, start)


def _query(rng: np.random.Generator) -> list[float]:
    v = rng.standard_normal(DIMS).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def _pct(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1000:6.1f} ms  p95 {xs[max(int(len(xs) * 0.95) - 1, 0)] * 1000:6.1f} ms"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _uptime() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _write(store: MilvusStore, history: HistoryStore, rows: list[tuple[MemoryRecord, list[float]]]) -> None:
    """What the write protocol does after its history commit: the vector write, then its timestamp."""
    await store.upsert(rows)
    await history.note_vector_ts(store.write_ts, _terms([r for r, _ in rows]))


async def _delete(store: MilvusStore, history: HistoryStore, records: list[MemoryRecord]) -> None:
    await store.delete([r.id for r in records])
    await history.note_vector_ts(store.write_ts, _terms(records))


def _terms(records: list[MemoryRecord]) -> list[str]:
    return sorted(set(scope_terms(p for r in records for p in r.scope.items())))


async def _search(store: MilvusStore, vector: list[float], user: str, limit: int = 10) -> list[str]:
    hits = await store.search(vector, filters.scope_conditions(Scope(user_id=user)), limit)
    return [r.id for r, _ in hits]


def _strong(store: MilvusStore) -> None:
    """The previous behaviour, for comparison: every search waits for the server's clock."""

    async def strong(terms: Any = ()) -> dict[str, Any]:
        return {"consistency_level": "Strong"}

    store._clock.search_args = strong  # type: ignore[method-assign]


async def latency(server: MilvusStandalone, history: HistoryStore, rows: int, samples: int) -> None:
    users = 100
    rng = np.random.default_rng(7)
    name = f"latency_{uuid.uuid4().hex[:8]}"
    writer = MilvusStore(server.uri, name, server.token, recorded_write=history.vector_ts_of)
    reader = MilvusStore(server.uri, name, server.token, recorded_write=history.vector_ts_of)
    strong = MilvusStore(server.uri, name, server.token)
    await writer.open("bench", DIMS)
    for start in range(0, rows, BATCH):
        await _write(writer, history, _batch(start, min(BATCH, rows - start), users, rng))
    await writer.flush()
    await reader.open("bench", DIMS)
    await strong.open("bench", DIMS)
    _strong(strong)
    adds = []
    for row in _batch(rows, samples, users, rng):
        t = time.perf_counter()
        await _write(writer, history, [row])
        adds.append(time.perf_counter() - t)
    await anyio.sleep(1)  # steady state: no write in the last tick
    out = {"add (upsert + timestamp to PostgreSQL)": _pct(adds)}
    for label, store in (("search, read-your-writes", reader), ("search, Strong (before)", strong)):
        times = []
        for i in range(samples):
            query = _query(rng)
            t = time.perf_counter()
            await _search(store, query, f"u{i % users}")
            times.append(time.perf_counter() - t)
        out[label] = _pct(times)
    after_add, after_delete, seen, gone = [], [], 0, 0
    tries = max(samples // 5, 10)
    for row in _batch(rows + samples, tries, users, rng):
        record, vector = row
        await _write(writer, history, [row])
        t = time.perf_counter()
        seen += record.id in (await _search(reader, vector, record.user_id or "", 1))
        after_add.append(time.perf_counter() - t)
        await _delete(writer, history, [record])
        t = time.perf_counter()
        gone += record.id not in (await _search(reader, vector, record.user_id or "", 1))
        after_delete.append(time.perf_counter() - t)
    out["search by another client right after an add"] = f"{_pct(after_add)}  saw it {seen}/{tries}"
    out["search by another client right after a delete"] = f"{_pct(after_delete)}  missed it {gone}/{tries}"
    others = []  # a user whose scope has no write in the last tick, right after another user's write
    for i, row in enumerate(_batch(rows + samples + tries, tries, users, rng)):
        await _write(writer, history, [row])
        t = time.perf_counter()
        await _search(reader, _query(rng), f"u{(i + users // 2) % users}")
        others.append(time.perf_counter() - t)
    out["search of another user right after an add"] = _pct(others)
    print(f"\n{rows} memories, {users} users, {samples} samples, {DIMS} dims ({_uptime()})")
    for key, value in out.items():
        print(f"  {key:48}{value}")
    for store in (writer, reader, strong):
        await store.close()
    _drop(server, name)


def _drop(server: MilvusStandalone, name: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.uri, token=server.token)
    try:
        client.drop_collection(name, timeout=60)
    finally:
        client.close()


def _wait_indexed(server: MilvusStandalone, name: str, limit_s: float) -> tuple[float, str]:
    """Seconds until the vector index covers every row (or `limit_s`), and the last progress seen."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.uri, token=server.token)
    start = time.perf_counter()
    progress = ""
    try:
        client.flush(name, timeout=600)
        while time.perf_counter() - start < limit_s:
            info = client.describe_index(name, "vector", timeout=60)
            pending = int(info.get("pending_index_rows", 0))
            progress = f"{info.get('indexed_rows')}/{info.get('total_rows')} indexed"
            if pending == 0 and info.get("indexed_rows") == info.get("total_rows"):
                break
            time.sleep(2)
        return time.perf_counter() - start, progress
    finally:
        client.close()


def _reload(server: MilvusStandalone, name: str) -> float:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.uri, token=server.token)
    try:
        client.release_collection(name, timeout=600)
        start = time.perf_counter()
        client.load_collection(name, timeout=1800)
        return time.perf_counter() - start
    finally:
        client.close()


async def growth(server: MilvusStandalone, history: HistoryStore, sizes: list[int], budget_s: float) -> None:
    """One collection grown to each size in turn; 100 memories per user (size / 100 users)."""
    assert server.pid is not None
    deadline = time.monotonic() + budget_s
    rng = np.random.default_rng(11)
    name = f"growth_{uuid.uuid4().hex[:8]}"
    store = MilvusStore(server.uri, name, server.token, recorded_write=history.vector_ts_of, timeout=120)
    await store.open("bench", DIMS)
    print(
        f"\ngrowth curve (384 dims, 100 memories per user, {_uptime()} at start); server RSS before: "
        f"{_rss_mb(server.pid):.0f} MB"
    )
    have = 0
    users = max(sizes) // 100
    for size in sizes:
        if time.monotonic() > deadline:
            print(f"  stopped before {size}: time budget spent")
            break
        start, before = time.perf_counter(), have
        while have < size:
            n = min(BATCH, size - have)
            await _write(store, history, _batch(have, n, users, rng))
            have += n
        inserted = time.perf_counter() - start
        indexed, progress = await anyio.to_thread.run_sync(
            lambda: _wait_indexed(server, name, max(deadline - time.monotonic(), 60))
        )
        reload = await anyio.to_thread.run_sync(lambda: _reload(server, name))
        await _search(store, _query(rng), "u0")  # the first search after loading
        times = []
        for i in range(200):
            query = _query(rng)
            t = time.perf_counter()
            await _search(store, query, f"u{(i * 7919) % min(users, size)}")
            times.append(time.perf_counter() - t)
        print(
            f"  {size:>9,}: insert {inserted:6.0f} s ({(size - before) / inserted:,.0f} rows/s), "
            f"flush+index {indexed:5.0f} s ({progress}), load {reload:5.1f} s, search {_pct(times)}, "
            f"server RSS {_rss_mb(server.pid):,.0f} MB ({_uptime()})",
            flush=True,
        )
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--sizes", default="", help="growth curve sizes, comma-separated (e.g. 100000,300000)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--budget-min", type=float, default=60.0, help="stop the growth curve after this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres_dir = Path(tempfile.mkdtemp(prefix="bench-postgres-"))  # not private: the server runs as `postgres`
        postgres = PostgresServer(postgres_dir)
        server = MilvusStandalone(Path(tmp) / "server")
        await anyio.to_thread.run_sync(postgres.start)
        await anyio.to_thread.run_sync(server.start)
        history = make_history(Settings(data_dir=Path(tmp), history_url=postgres.new_database()))
        await history.open()
        try:
            print(f"Milvus 2.3.5 standalone pid {server.pid}, PostgreSQL history; cores: {os.cpu_count()}")
            if not args.skip_latency:
                await latency(server, history, args.rows, args.samples)
            if args.sizes:
                sizes = [int(s) for s in args.sizes.split(",")]
                await growth(server, history, sizes, args.budget_min * 60)
        finally:
            await history.close()
            server.stop()
            postgres.stop()
            shutil.rmtree(postgres_dir, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
