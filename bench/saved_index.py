"""First search after spawn with the search index rebuilt from SQLite vs loaded from its saved files.

On a copy of the seeded data dir of S memories (bench/seed.py), a stdio server is spawned three
times, each shut down cleanly (end of input): the first finds no saved index and rebuilds it from
SQLite (then saves it at close, after its probe write), the next two load the saved files (each
close saves again: the probe write changed the history). Reported per spawn: the first
`search_memories` answered (seconds since spawn), the memory 1 s after it, and after a first write.

    python -m bench.saved_index --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from .seed import USER, seeded_dir
from .startup import run_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    opts = parser.parse_args()
    print("| S | spawn | index | first search s | RSS after it MB | RSS after a write MB |")
    print("|---|---|---|---|---|---|")
    for size in opts.sizes:
        data_dir = seeded_dir(size)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"MEMORY_DATA_DIR": str(data_dir), "MEMORY_LOG_LEVEL": "WARNING"})
        argv = [sys.executable, "-m", "milvus_memory_mcp", "serve"]
        query = {"query": "What are the user's hobbies?", "user_id": USER}
        try:
            for n in range(3):
                saved = any(p.name.endswith(".index") for p in data_dir.iterdir())
                out = run_once(argv, env, "search_memories", query, rss=True)
                print(
                    f"| {size} | {n + 1} | {'loaded' if saved else 'rebuilt'} | {out['first call']:.2f} "
                    f"| {out['rss_mb']:.0f} | {out['rss_after_write_mb']:.0f} |",
                    flush=True,
                )
        finally:
            shutil.rmtree(data_dir.parent)


if __name__ == "__main__":
    main()
