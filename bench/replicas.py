"""add_memory throughput of stateless replicas on one PostgreSQL history and one Milvus 2.3.5 server.

1 and 3 replicas (`serve --transport streamable-http`, each its own data dir), `--writers`
concurrent MCP HTTP sessions spread round-robin over them, each adding distinct texts to one
scope (so every add takes the cluster write lock; `--verbatim` passes infer=false, which skips the
near-duplicate search made under that lock; `--own-users`: each writer adds to a user of its own,
so that search waits only for that user's last write), with two embedders (`--embedder`): the
local model (run in each replica) and an OpenAI-compatible API faked locally that answers after a
fixed `--delay`.

    python -m bench.replicas [--writers 12] [--adds 240] [--delay 0.02] [--verbatim] [--own-users]
                             [--embedder both|local|fake]

Starts its own PostgreSQL (Debian's package) and Milvus standalone in a temp dir. Numbers are
noisy on a shared machine: the load average is printed with them.
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

import anyio

from tests.support.fake_openai import FakeOpenAI
from tests.support.milvus_server import MilvusStandalone
from tests.support.postgres_server import PostgresServer
from tests.support.replicas import Replica, connect, start_replicas, stop_replicas


async def _run(
    endpoints: list[Replica], writers: int, adds: int, arguments: dict[str, object], own_users: bool
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    per_writer = adds // writers

    async def writer(w: int) -> None:
        async with connect(endpoints[w % len(endpoints)]) as client:
            for i in range(per_writer):
                start = time.perf_counter()
                text = f"Writer {w} note {i}: {uuid.uuid4().hex}"
                user = f"bench-{w}" if own_users else "bench"
                result = await client.call_tool("add_memory", {"messages": text, "user_id": user, **arguments})
                assert not result.is_error, result.content
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(writers):
            tg.start_soon(writer, w)
    return time.perf_counter() - start, latencies


async def _warm(replicas: list[Replica]) -> None:
    """One add per replica: the stores open and the model loads before the clock starts."""
    for r in replicas:
        async with connect(r) as client:
            await client.call_tool("add_memory", {"messages": f"warm-up {uuid.uuid4().hex}", "user_id": "warm"})


def measure(
    base: Path,
    count: int,
    env: dict[str, str],
    writers: int,
    adds: int,
    arguments: dict[str, object],
    own_users: bool,
) -> tuple[float, float, float]:
    replicas = start_replicas(base, count, env)
    try:
        anyio.run(_warm, replicas)
        wall, latencies = anyio.run(_run, replicas, writers, adds, arguments, own_users)
    finally:
        stop_replicas(replicas)
    q = statistics.quantiles(latencies, n=20)
    return len(latencies) / wall, q[9] * 1000, q[18] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=12)
    parser.add_argument("--adds", type=int, default=240)
    parser.add_argument("--delay", type=float, default=0.02, help="the fake embeddings API's reply time (s)")
    parser.add_argument(
        "--verbatim", action="store_true", help="infer=false: no near-duplicate search under the write lock"
    )
    parser.add_argument("--own-users", action="store_true", help="each writer adds to a user of its own")
    parser.add_argument("--embedder", choices=("both", "local", "fake"), default="both")
    args = parser.parse_args()
    arguments: dict[str, object] = {"infer": False} if args.verbatim else {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="bench-postgres-")))
    milvus = MilvusStandalone(tmp / "milvus")
    postgres.start()
    milvus.start()
    try:
        with FakeOpenAI(dims=384, delay=args.delay).running() as fake:
            embedders = {
                "local model": {"MEMORY_EMBEDDER": "local"},
                f"fake API ({args.delay * 1000:.0f} ms)": {
                    "MEMORY_EMBEDDER": "openai:fake-embedder",
                    "MEMORY_EMBEDDING_DIMS": "384",
                    "OPENAI_BASE_URL": fake.base_url,
                    "OPENAI_API_KEY": "bench",
                },
            }
            embedders = {k: v for k, v in embedders.items() if args.embedder in ("both", k.split()[0])}
            mode = "infer=false" if args.verbatim else "infer omitted (near-duplicate check)"
            users = "a user per writer" if args.own_users else "one user"
            print(f"{args.writers} writers, {args.adds} adds per run to {users}, {mode}, {os.cpu_count()} cores")
            print(f"{'embedder':<22} {'replicas':>8} {'adds/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'load':>6}")
            for name, extra in embedders.items():
                for count in (1, 3):
                    collection = f"bench_{uuid.uuid4().hex[:12]}"
                    env = {
                        "MEMORY_HISTORY_URL": postgres.new_database(),
                        "MEMORY_MILVUS_URI": milvus.uri,
                        "MEMORY_MILVUS_TOKEN": milvus.token,
                        "MEMORY_COLLECTION": collection,
                        **extra,
                    }
                    rate, p50, p95 = measure(
                        tmp / collection, count, env, args.writers, args.adds, arguments, args.own_users
                    )
                    load = os.getloadavg()[0]
                    print(f"{name:<22} {count:>8} {rate:>8.1f} {p50:>8.0f} {p95:>8.0f} {load:>6.2f}", flush=True)
    finally:
        milvus.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
