"""The owner's `export` and `import` commands (the format and the import core: server/core/transfer.py).

`export` reads the history database page by page (SQLite serves readers beside a running
server) and streams JSON Lines to a file or stdout. `import` reads the file line by line and sends
batches to the process that owns the store (this one, or a running server: `cli_session`); a
malformed line is reported by its number and skipped, or, with `--strict`, nothing is written.
A progress bar shows on a terminal (stderr), nothing otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from milvus_memory_mcp.cli_session import Session
from milvus_memory_mcp.errors import InvalidInput, MemoryServiceError
from milvus_memory_mcp.settings import Settings

BATCH = 200  # memory lines sent to the owner at a time
MAX_REPORTED = 50  # malformed lines listed one by one


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="Write memories with their history as JSON Lines.", description="Export memories."
    )
    p.add_argument("--user-id", help="Only this user's memories.")
    p.add_argument("--agent-id", help="Only this agent's memories.")
    p.add_argument("--run-id", help="Only this run's memories.")
    p.add_argument("--output", "-o", help="The file to write (default: stdout).")
    p.add_argument("--with-vectors", action="store_true", help="Include each memory's vector.")
    p.add_argument("--data-dir", help="The data dir [env MEMORY_DATA_DIR]; other settings: MEMORY_* variables.")
    p = sub.add_parser("import", help="Read memories from an export file.", description="Import memories.")
    p.add_argument("file", help="A file written by `export`.")
    p.add_argument(
        "--remap-user-id", action="append", default=[], metavar="OLD=NEW", help="Import OLD's memories as NEW's."
    )
    p.add_argument("--on-conflict", choices=("skip", "replace"), default="skip", help="When an id exists already.")
    p.add_argument("--strict", action="store_true", help="Import nothing if any line is malformed.")
    p.add_argument("--json", action="store_true", help="Print the outcome as JSON (for scripts).")
    p.add_argument("--data-dir", help="The data dir [env MEMORY_DATA_DIR]; other settings: MEMORY_* variables.")


def progress_bar(total: int, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=" memories", desc=what, disable=not sys.stderr.isatty(), file=sys.stderr)


async def export_command(settings: Settings, args: argparse.Namespace) -> int:
    from milvus_memory_mcp import filters
    from milvus_memory_mcp.core.transfer import export
    from milvus_memory_mcp.embedders import make_embedder
    from milvus_memory_mcp.history import make_history
    from milvus_memory_mcp.validation import check_scope

    scope = check_scope(args.user_id, args.agent_id, args.run_id)
    where = None if scope.is_empty() else filters.within(scope, None)
    history, embedder = make_history(settings), make_embedder(settings)  # the model is not loaded
    await history.open()
    out: TextIO = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        with progress_bar(0, "export") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            memories, events = await export(
                history, embedder, where, out, with_vectors=args.with_vectors, progress=progress
            )
    finally:
        if out is not sys.stdout:
            out.close()
        await history.close()
    if args.output:
        print(f"Exported {memories} memories ({events} history events) to {args.output}.")
    return 0


def _remaps(pairs: list[str]) -> dict[str, str]:
    remap = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise InvalidInput(f"--remap-user-id takes OLD=NEW, got {pair!r}")
        remap[old] = new
    return remap


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of each non-blank line after the header."""
    with path.open(encoding="utf-8", errors="replace") as f:
        f.readline()
        for number, line in enumerate(f, 2):
            if line.strip():
                yield number, line


def _parse(line: str, remap: dict[str, str]) -> dict[str, Any]:
    from milvus_memory_mcp.core.transfer import from_json

    try:
        obj = json.loads(line)
    except ValueError as e:
        raise InvalidInput(f"not valid JSON ({e}); the file may be truncated or corrupt") from None
    from_json(obj)  # checked here to report the line; the owner checks again
    if obj.get("user_id") in remap:
        obj["user_id"] = remap[obj["user_id"]]
    return obj


async def import_command(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    from milvus_memory_mcp.core.transfer import check_header

    path = Path(args.file)
    try:
        remap = _remaps(args.remap_user_id)
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
        try:
            head = check_header(json.loads(first))
        except ValueError:
            raise InvalidInput(f"{path}: line 1 is not a JSON export header") from None
    except OSError as e:
        print(f"milvus-memory-mcp import: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    except InvalidInput as e:
        print(f"milvus-memory-mcp import: {e}", file=sys.stderr)
        return 1
    malformed: list[tuple[int, str]] = []
    if args.strict:
        for number, line in _lines(path):
            try:
                _parse(line, remap)
            except InvalidInput as e:
                malformed.append((number, str(e)))
    counts = {"imported": 0, "skipped": 0}
    if not malformed:
        total = int((head.get("counts") or {}).get("memories") or 0)
        batch: list[dict[str, Any]] = []
        try:
            with progress_bar(total, "import") as bar:
                for number, line in _lines(path):
                    try:
                        batch.append(_parse(line, remap))
                    except InvalidInput as e:
                        malformed.append((number, str(e)))
                    if len(batch) >= BATCH:
                        _add(counts, await session.import_batch(batch, args.on_conflict, head.get("embedder")))
                        bar.update(len(batch))
                        batch = []
                if batch:
                    _add(counts, await session.import_batch(batch, args.on_conflict, head.get("embedder")))
                    bar.update(len(batch))
        except MemoryServiceError as e:
            print(f"milvus-memory-mcp import: {e} (imported so far: {counts['imported']})", file=sys.stderr)
            return 1
    for number, message in malformed[:MAX_REPORTED]:
        print(f"{path}: line {number}: {message}", file=sys.stderr)
    if len(malformed) > MAX_REPORTED:
        print(f"{path}: {len(malformed) - MAX_REPORTED} more malformed lines", file=sys.stderr)
    result = {**counts, "malformed": [{"line": n, "error": m} for n, m in malformed]}
    if args.json:
        out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        note = f"; {len(malformed)} malformed line(s) {'(nothing imported: --strict)' if args.strict else 'skipped'}"
        out.write(
            f"Imported {counts['imported']} memories, skipped {counts['skipped']} already present"
            + (note if malformed else "")
            + ".\n"
        )
    return 1 if malformed else 0


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for key in counts:
        counts[key] += int(more.get(key, 0))
