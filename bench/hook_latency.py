"""Latency of `milvus-memory-mcp hook recall`, as Claude Code runs it (a new process per prompt).

    python -m bench.hook_latency [--memories 10000] [--runs 30]

Warm: a `serve` process owns a data dir of N memories (bench/seed.py) and has answered a search;
each run starts `milvus-memory-mcp hook recall` with a UserPromptSubmit event on stdin and waits
for it to exit (Python start-up, imports, the search in the owner, the output). Cold: the same
with no server running: the hook finds no owner and exits without output (it never loads the
model). Prints p50 / p95 in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed import USER, seeded_dir  # noqa: E402

PROMPTS = [
    "What food do I like?",
    "When is my next exam?",
    "Where am I travelling this year?",
    "Which programming languages do I use at work?",
    "What are my hobbies?",
    "Tell me about my pets",
]


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    return env | {"MEMORY_DATA_DIR": str(data_dir), "MEMORY_USER_ID": USER, "MEMORY_LOG_LEVEL": "WARNING"}


def run_hooks(env: dict[str, str], runs: int) -> tuple[list[float], int]:
    times, printed = [], 0
    for i in range(runs):
        event = {"session_id": "bench", "transcript_path": "/dev/null", "cwd": "/", "prompt": PROMPTS[i % len(PROMPTS)]}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "milvus_memory_mcp", "hook", "recall"],
            input=json.dumps(event).encode(),
            env=env,
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
        printed += bool(proc.stdout.strip())
    return times, printed


def report(name: str, times: list[float], printed: int) -> None:
    ordered = sorted(times)
    p50 = ordered[len(ordered) // 2] * 1000
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000
    print(f"{name}: p50 {p50:.0f} ms, p95 {p95:.0f} ms ({len(times)} runs, {printed} printed context)")


async def main(args: argparse.Namespace, data_dir: Path) -> None:
    env = env_for(data_dir)
    server = StdioServerParameters(command=sys.executable, args=["-m", "milvus_memory_mcp", "serve"], env=env)
    async with Client(server, read_timeout_seconds=120) as client:
        await client.call_tool("search_memories", {"query": "warm up", "limit": 1})
        times, printed = await anyio.to_thread.run_sync(run_hooks, env, args.runs)
        report(f"warm owner, {args.memories} memories", times, printed)
    times, printed = await anyio.to_thread.run_sync(run_hooks, env, args.runs)
    report("cold (no owner)", times, printed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    arguments = parser.parse_args()
    anyio.run(main, arguments, seeded_dir(arguments.memories))  # seeding runs its own event loop first
