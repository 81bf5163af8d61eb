"""The owner's `reembed` command: every memory moved to another embedder (server/core/reembed.py).

Steps are sent to the process that owns the store (this one, or a running server, which keeps
serving between them) until the switch; a progress bar shows on a terminal (stderr). Interrupted
or killed, it is run again with the same arguments and resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from milvus_memory_mcp.cli_session import Session
from milvus_memory_mcp.cli_transfer import progress_bar
from milvus_memory_mcp.errors import MemoryServiceError

STEP = 500  # memories per step
MAX_STEP = 10_000  # the owner's bound (server/core/reembed.py); the parser is built before any command runs


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "reembed",
        help="Re-embed every memory with another embedder, then switch to it.",
        description="Build the new embedder's vectors beside the old ones (which keep serving), check them, "
        "then switch. Run again to resume after an interruption.",
    )
    p.add_argument("--embedder", required=True, help="The new embedder: 'local' or 'openai:<model>'.")
    p.add_argument("--embedding-dims", type=_bounded(1, 32768), help="The new embedder's dimension, if it needs one.")
    p.add_argument("--batch", type=_bounded(1, MAX_STEP), default=STEP, help=f"Memories per step (default {STEP}).")
    p.add_argument("--json", action="store_true", help="Print the outcome as JSON (for scripts).")
    p.add_argument("--data-dir", help="The data dir [env MEMORY_DATA_DIR]; other settings: MEMORY_* variables.")


async def reembed_command(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    result: dict[str, Any] = {}
    try:
        with progress_bar(0, "reembed") as progress:
            while not result.get("switched"):
                result = await session.reembed_step(args.embedder, args.embedding_dims, args.batch)
                progress.total = result["total"]
                progress.n = result["done"]  # may go back when memories change meanwhile
                progress.refresh()
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp reembed: {e}", file=sys.stderr)
        return 1
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
        return 0
    dims = f" MEMORY_EMBEDDING_DIMS={args.embedding_dims}" if args.embedding_dims else ""
    out.write(
        f"Re-embedded {result['total']} memories with {result['model']} ({result['dimensions']} dims) into "
        f"collection {result['collection']}, now the active one.\n"
        f"From now on start every server on this data dir with MEMORY_EMBEDDER={args.embedder}{dims} "
        "(the old embedder is refused).\n"
    )
    return 0
