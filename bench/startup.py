"""Start-up: spawn the server over stdio N times and time what a client waits for.

For each spawn: spawn -> `initialize` answered -> `tools/list` answered -> first tool call
answered (`search_memories` on a data dir holding --memories memories), then the server's RSS.
In the same run, interleaved, the reference: a bare MCPServer with one trivial tool (bench/
bare_server.py), whose first call is that tool. Raw JSON-RPC over the pipes, no client library,
so the client side costs the same for both.

    python -m bench.startup --runs 10 --memories 1000
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .stats import p50, pct, table

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "2025-06-18"


class Peer:
    """A server process spoken to in newline-delimited JSON-RPC over its stdin/stdout."""

    def __init__(self, argv: list[str], env: dict[str, str], *, sample: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
        )
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        # With `sample`: the largest memory_mb() seen, every 100 ms from spawn to close (a read costs
        # ~2 ms of CPU per process, so timed runs do not sample).
        self.peak_mb = 0.0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        if sample:
            self._sampler.start()

    def _sample(self) -> None:
        while not self._sampling.wait(0.1):
            try:
                self.peak_mb = max(self.peak_mb, self.memory_mb())
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass  # a process ending between the listing and the read

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, rid: int, method: str, params: dict[str, Any] | None = None, timeout: float = 120) -> float:
        """Send a request, wait for its answer; returns seconds since spawn."""
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, **({"params": params} if params else {})})
        deadline = time.perf_counter() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == rid:
                    if "error" in message or message.get("result", {}).get("isError"):
                        raise RuntimeError(f"{method} failed: {line[:300]!r}")
                    return time.perf_counter() - self.t0
            left = deadline - time.perf_counter()
            if left <= 0 or not self._sel.select(left):
                raise TimeoutError(f"no answer to {method}")
            assert self.proc.stdout is not None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(f"server closed stdout before answering {method}")
            self._buf += chunk

    def _pids(self) -> list[int]:
        """The server and its child processes (the local model runs in one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [self.proc.pid, *map(int, children)]

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server and its children have used so far; robust to a busy machine."""
        total = 0.0
        for pid in self._pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def memory_mb(self) -> float:
        """Memory in MB of the server and its children (the model's process): the sum of each one's
        proportional set size (PSS: library pages they share counted once; for one process alone
        it is its RSS less pages shared with other processes), from /proc."""
        total = 0.0
        for pid in self._pids():
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        return total

    def close(self) -> None:
        self._sampling.set()
        if self._sampler.is_alive():
            self._sampler.join()
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # end of input: the server shuts down cleanly (final flush)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._sel.close()


def handshake(peer: Peer) -> tuple[float, float]:
    init = peer.request(
        1,
        "initialize",
        {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
    )
    peer.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    listed = peer.request(2, "tools/list")
    return init, listed


def run_once(argv: list[str], env: dict[str, str], tool: str, args: dict[str, Any], rss: bool) -> dict[str, float]:
    """With `rss`: the memory 1 s after the first call, then 3 s after an add_memory (on Milvus Lite
    the first search needs no Milvus; the first write does), and the peak (sampled: not a timed run)."""
    peer = Peer(argv, env, sample=rss)
    try:
        init, listed = handshake(peer)
        cpu_listed = peer.cpu_s()
        first = peer.request(3, "tools/call", {"name": tool, "arguments": args})
        out = {"initialize": init, "tools/list": listed, "first call": first}
        out["cpu tools/list"], out["cpu first call"] = cpu_listed, peer.cpu_s()
        if rss:
            time.sleep(1.0)  # idle after the first call
            out["rss_mb"] = peer.memory_mb()
            write = {"messages": "Probe memory written by the benchmark", "user_id": "bench-probe"}
            sent = time.perf_counter() - peer.t0
            out["first write"] = peer.request(4, "tools/call", {"name": "add_memory", "arguments": write}) - sent
            time.sleep(3.0)  # idle after the write
            out["rss_after_write_mb"], out["peak_rss_mb"] = peer.memory_mb(), peer.peak_mb
        return out
    finally:
        peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--memories", type=int, default=1000, help="memories in the data dir (0: a new, empty dir)")
    opts = parser.parse_args()

    if opts.memories:
        from .seed import USER, seeded_dir

        data_dir = seeded_dir(opts.memories)
    else:
        import tempfile

        USER = "bench-user"
        data_dir = Path(tempfile.mkdtemp(prefix="bench-empty-")) / "data"
    # Like an installed package, both servers may cache their bytecode (the first, unmeasured spawn writes it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"MEMORY_DATA_DIR": str(data_dir), "MEMORY_LOG_LEVEL": "WARNING"})
    server = [sys.executable, "-m", "milvus_memory_mcp", "serve"]
    bare = [sys.executable, str(ROOT / "bench" / "bare_server.py")]
    query = {"query": "What does the user like to do on weekends?", "user_id": USER}

    results: dict[str, list[dict[str, float]]] = {"bare MCPServer": [], "milvus-memory-mcp": []}
    # Warm the OS file cache and write the bytecode, not measured.
    run_once(server, env, "search_memories", query, rss=False)
    run_once(bare, env, "ping", {"text": "x"}, rss=False)
    for i in range(opts.runs):
        results["bare MCPServer"].append(run_once(bare, env, "ping", {"text": "x"}, rss=False))
        results["milvus-memory-mcp"].append(run_once(server, env, "search_memories", query, rss=False))
        print(f"  run {i + 1}/{opts.runs}", file=sys.stderr)
    memory = [run_once(server, env, "search_memories", query, rss=True) for _ in range(3)]  # not timed

    shutil.rmtree(data_dir.parent)
    rows = []
    for name, runs in results.items():
        for phase in ("initialize", "tools/list", "first call"):
            values = [r[phase] for r in runs]
            cpu = [r[f"cpu {phase}"] for r in runs] if phase != "initialize" else []
            rows.append(
                [
                    name,
                    f"spawn -> {phase} answered",
                    f"{p50(values):.3f}",
                    f"{pct(values, 0.95):.3f}",
                    f"{p50(cpu):.3f}" if cpu else "",
                ]
            )
    mem, ref = results["milvus-memory-mcp"], results["bare MCPServer"]
    ratio = p50([r["tools/list"] for r in mem]) / p50([r["tools/list"] for r in ref])
    cpu_ratio = p50([r["cpu tools/list"] for r in mem]) / p50([r["cpu tools/list"] for r in ref])
    print(f"\n{opts.runs} spawns each, {opts.memories} memories in the data dir, {os.cpu_count()} CPUs\n")
    print(table(["server", "phase", "wall p50 s", "wall p95 s", "CPU p50 s"], rows))
    print(
        f"\ninitialize + tools/list, milvus-memory-mcp / bare MCPServer (p50): wall {ratio:.2f}x, "
        f"(target <= 1.15x); CPU {cpu_ratio:.2f}x, the model's process included"
    )
    print(f"first search_memories after spawn, p50: {p50([r['first call'] for r in mem]):.2f} s (target <= 1.5 s)")
    keys = ("rss_mb", "first write", "rss_after_write_mb", "peak_rss_mb")
    rss, write, after, peak = (p50([r[k] for r in memory]) for k in keys)
    print(
        f"memory (PSS, server + model process) 1 s after the first call, p50: {rss:.0f} MB; first add_memory "
        f"then {write:.2f} s, 3 s after it {after:.0f} MB (peak from spawn {peak:.0f} MB; target <= 400 MB)"
    )


if __name__ == "__main__":
    main()
