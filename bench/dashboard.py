"""The dashboard's page weights and the list page's time to first paint with 10k memories.

A data dir of N memories in one scope (generated sentences, written through MemoryService with
random unit vectors under the local model's id: the server never re-embeds them; cached under
bench/.cache/), a real server process (streamable HTTP + dashboard, a bearer token bound to the
scope), Debian's chromium headless through Playwright:

- page weights: each page's HTML, and the static files a first visit loads (as sent: gzip);
- first paint / first contentful paint of /ui/memories (page 1 of N), from the browser's paint
  timing, in a fresh browser context per run (cold: the static files are fetched too) and warm.

    python -m bench.dashboard [--memories 10000] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
import numpy as np

from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from .corpus import CACHE, sentences
from .stats import p50, pct, table

USER = "bench-user"
TOKEN = "bench-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


class RandomEmbedder:
    """Random unit vectors under the local model's id (for page timings, not for search quality)."""

    model_id = LocalEmbedder.model_id
    dimensions = LocalEmbedder.dimensions

    def __init__(self) -> None:
        self._rng = np.random.default_rng(7)

    def start(self) -> None: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        v = self._rng.standard_normal((len(texts), self.dimensions)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()


async def _seed(data_dir: Path, count: int) -> None:
    texts = sentences(count)
    settings = Settings(data_dir=data_dir, log_level="WARNING", max_messages=1000, dedup_threshold=1.0)
    async with MemoryService(settings, embedder=RandomEmbedder()) as service:  # type: ignore[arg-type]
        for n, start in enumerate(range(0, count, 1000)):
            chunk = [{"role": "user", "content": t} for t in texts[start : start + 1000]]
            await service.add(chunk, Scope(user_id=USER), {"category": f"c{n % 8}"}, infer=False)


def seeded(count: int) -> Path:
    cached = CACHE / f"dashboard-{count}"
    if not cached.exists():
        print(f"seeding {count} memories into {cached}", file=sys.stderr)
        building = CACHE / f"building-dashboard-{count}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        anyio.run(_seed, building, count)
        building.rename(cached)
    target = Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "data"
    shutil.copytree(cached, target)
    return target


def start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    tokens = data_dir.parent / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: {"user_id": USER, "access": "read-write"}}))
    log = data_dir.parent / "server.log"
    cmd = [sys.executable, "-m", "milvus_memory_mcp", "serve", "--transport", "streamable-http", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--auth-tokens", str(tokens), "--data-dir", str(data_dir)],
        stderr=log.open("wb"),
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log.read_bytes())
        if found:
            return proc, f"http://127.0.0.1:{int(found.group(1))}"
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start: {log.read_text()}")


def login(client: httpx2.Client) -> None:
    page = client.get("/ui/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce
    assert client.post("/ui/login", data={"nonce": nonce.group(1), "token": TOKEN}).status_code == 303


def weights(base: str) -> list[list[object]]:
    client = httpx2.Client(base_url=base, timeout=120)
    login(client)
    listing = client.get("/ui/memories").text
    memory_id = re.search(r'href="/ui/memory/([^"]+)"', listing)
    assert memory_id
    pages = {
        "login": "/ui/login",
        "memories (50 of N)": "/ui/memories",
        "search": "/ui/search?q=" + "which food does Alice like",
        "memory": f"/ui/memory/{memory_id.group(1)}",
        "stats": "/ui/stats",
    }
    rows: list[list[object]] = []
    for name, path in pages.items():
        times = []
        for _ in range(3):  # the first request of a page may open the store: the best of three
            t0 = time.perf_counter()
            html = client.get(path).content
            times.append((time.perf_counter() - t0) * 1000)
        rows.append([name, round(len(html) / 1024, 1), round(min(times))])
    for name in ("ui.css", "htmx.min.js", "favicon.svg"):
        answer = client.get(f"/ui/static/{name}", headers={"Accept-Encoding": "gzip"})
        sent = int(answer.headers.get("content-length") or len(answer.content))
        gzip = answer.headers.get("content-encoding") == "gzip"
        rows.append([f"static {name}" + (" (gzip)" if gzip else ""), round(sent / 1024, 1), ""])
    return rows


def _fcp(page: object) -> float | None:
    script = """new Promise(done => {
        new PerformanceObserver(list => {
            for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') done(e.startTime);
        }).observe({type: 'paint', buffered: true});
        setTimeout(() => done(null), 5000);
    })"""
    value = page.evaluate(script)  # type: ignore[attr-defined]
    return None if value is None else float(value)


def paints(base: str, runs: int) -> dict[str, list[float]]:
    """Cold: a fresh context (no cached CSS / JS), the session cookie copied in; warm: the same page again."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"cold": [], "warm": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        first = browser.new_context()
        page = first.new_page()
        page.goto(base + "/ui/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/ui/memories$"))
        cookies = first.cookies()
        first.close()
        for _ in range(runs):
            context = browser.new_context()
            context.add_cookies(cookies)
            page = context.new_page()
            for label in ("cold", "warm"):
                page.goto(base + "/ui/memories", wait_until="load")
                fcp = _fcp(page)
                if fcp is not None:
                    out[label].append(fcp)
            context.close()
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    data_dir = seeded(args.memories)
    proc, base = start(data_dir)
    try:
        httpx2.get(base + "/health", timeout=60)
        print(f"## Page weights ({args.memories} memories in the scope)\n")
        print(table(["page", "KB", "ms (one request, best of 3)"], weights(base)))
        timings = paints(base, args.runs)
        print(f"\n## /ui/memories: time to first contentful paint (navigation start to FCP), {args.runs} runs\n")
        rows = [[k, p50(v), pct(v, 0.9), min(v) if v else float("nan")] for k, v in timings.items()]
        print(table(["", "p50 ms", "p90 ms", "min ms"], rows))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
