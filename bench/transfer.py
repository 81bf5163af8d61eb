"""export / import at scale: wall time and peak memory of each command, as a user runs it.

Seeds a data dir with N memories through `MemoryService.add` (vectors from a deterministic
stand-in for the local model, so no model runs while seeding), a share of them updated so that
histories have several events, then runs, as subprocesses: `export --with-vectors`, `export`, and
`import` of each file into an empty data dir (with vectors: reused, the same embedder; without:
every text embedded by the real local model). Peak memory is the child's max RSS (wait4).

    python -m bench.transfer --memories 10000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np

from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


class StandIn:
    """Deterministic unit vectors under the local model's id (so exported vectors are reused)."""

    model_id = LocalEmbedder.model_id
    dimensions = LocalEmbedder.dimensions

    def start(self) -> None:
        pass

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        out = []
        for t in texts:
            rng = np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16))
            v = rng.standard_normal(self.dimensions).astype(np.float32)
            out.append((v / np.linalg.norm(v)).tolist())
        return out


async def seed(data_dir: Path, count: int) -> None:
    settings = Settings(data_dir=data_dir, log_level="WARNING", max_messages=1000, dedup_threshold=1.0)
    async with MemoryService(settings, embedder=StandIn()) as svc:
        for start in range(0, count, 1000):
            ids = range(start, min(count, start + 1000))
            msgs = [{"role": "user", "content": f"Fact {i}: likes item {i * 7919 % 10007}"} for i in ids]
            added = await svc.add(msgs, Scope(user_id=f"user-{start // 1000 % 10}"), {"batch": start // 1000})
            for event in added.results[:100]:  # a tenth gets a second version
                await svc.update(event.id, event.memory + " (updated)")


async def search_times(data_dir: Path, runs: int = 20) -> tuple[float, float, float]:
    """p50 ms of a plain search, of an `as_of` search (a time after every write) of one user, and of
    the first `as_of` search after a write (its index of versions is rebuilt then)."""
    from datetime import datetime, timezone

    from .stats import p50

    settings = Settings(data_dir=data_dir, log_level="WARNING")
    now = datetime.now(timezone.utc).isoformat()
    scope = Scope(user_id="user-0")
    async with MemoryService(settings, embedder=StandIn()) as svc:
        await svc.ready()
        out = []
        for as_of in (None, now):
            times = []
            for i in range(runs + 2):
                t0 = time.perf_counter()
                await svc.search(f"likes item {i}", scope, 10, as_of=as_of)
                times.append((time.perf_counter() - t0) * 1000)
            out.append(p50(times[2:]))
        [first] = (await svc.list(scope, None, 1)).results
        times = []
        for i in range(runs):
            await svc.update(first.id, f"{first.memory} (edit {i})")
            t0 = time.perf_counter()
            await svc.search(f"likes item {i}", scope, 10, as_of=now)
            times.append((time.perf_counter() - t0) * 1000)
        out.append(p50(times))
    return out[0], out[1], out[2]


# A small parent: the command's max RSS, as getrusage counts it, includes its parent's memory at
# fork; this one is small, so the figure is the command's own (its largest process).
MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def run(args: list[str], data_dir: Path, **env_extra: str) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB, its largest process) and stdout of `milvus-memory-mcp ARGS` on
    `data_dir` (environment: ours without MEMORY_*, plus `env_extra`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATA_DIR=str(data_dir), MEMORY_LOG_LEVEL="WARNING", **env_extra)
    t0 = time.perf_counter()
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "milvus_memory_mcp", *args]
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{args} failed")
    lines = done.stdout.splitlines()
    return elapsed, int(lines[-1]) / 1024, "\n".join(lines[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    n = parser.parse_args().memories
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    source = work / "source"
    t0 = time.perf_counter()
    anyio.run(seed, source, n)
    print(f"seeded {n} memories in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    plain, past, past_cold = anyio.run(search_times, source)
    rows = []
    for name, extra in (("with vectors", ["--with-vectors"]), ("texts only", [])):
        dump = work / f"dump-{len(extra)}.jsonl"
        secs, mb, _ = run(["export", "--output", str(dump), *extra], source)
        rows.append((f"export ({name})", secs, mb, dump.stat().st_size / 1e6))
        secs, mb, _ = run(["import", str(dump)], work / f"target-{len(extra)}")
        rows.append((f"import ({name})", secs, mb, dump.stat().st_size / 1e6))
    print(f"\n{n} memories ({n // 10} with two versions)")
    print(f"{'command':<26} {'seconds':>8} {'peak RSS MB':>12} {'file MB':>8}")
    for label, secs, mb, size in rows:
        print(f"{label:<26} {secs:>8.1f} {mb:>12.0f} {size:>8.1f}")
    print(
        f"search p50, one user of {n // 10} memories among {n}: plain {plain:.1f} ms, as_of {past:.1f} ms, "
        f"first as_of after a write {past_cold:.1f} ms"
    )


if __name__ == "__main__":
    main()
