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
from milvus_memory_mcp.terminal import json_text, printable
from milvus_memory_mcp.wire import MAX_BATCH_BYTES, MAX_LINE_BYTES

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
    from milvus_memory_mcp.cli_output import OutputFailed, json_output
    from milvus_memory_mcp.core.transfer import export
    from milvus_memory_mcp.embedders import make_embedder
    from milvus_memory_mcp.history import make_history
    from milvus_memory_mcp.validation import check_scope

    scope = check_scope(args.user_id, args.agent_id, args.run_id)
    where = None if scope.is_empty() else filters.within(scope, None)
    history, embedder = make_history(settings), make_embedder(settings)  # the model is not loaded
    try:
        with json_output(args.output) as out:  # a file written whole or not at all
            await history.open()
            try:
                with progress_bar(0, "export") as bar:

                    def progress(done: int, total: int) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    memories, events = await export(
                        history, embedder, where, out, with_vectors=args.with_vectors, progress=progress
                    )
            finally:
                await history.close()
    except OutputFailed as e:
        print(f"milvus-memory-mcp export: {e}", file=sys.stderr)
        return 1
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


class Lines:
    """The memory lines of an export file, each parsed and checked (`read`), and the ids seen so
    far: a memory id or a history event id on two lines is reported on the second."""

    def __init__(self, path: Path, remap: dict[str, str], max_bytes: int) -> None:
        self._path = path
        self._remap = remap
        self._max_bytes = max_bytes
        self._memories: dict[str, int] = {}
        self._events: dict[str, int] = {}

    def read(self) -> Iterator[tuple[int, dict[str, Any] | InvalidInput, int]]:
        """(number, the line's object or why it is malformed, its size in bytes) of each non-blank
        line after the header."""
        with self._path.open("rb") as f:
            f.readline()
            for number, raw in enumerate(f, 2):
                if raw.strip():
                    try:
                        yield number, self._parse(number, raw), len(raw)
                    except InvalidInput as e:
                        yield number, e, len(raw)

    def _parse(self, number: int, raw: bytes) -> dict[str, Any]:
        from milvus_memory_mcp.core.transfer import from_json

        if len(raw) > MAX_LINE_BYTES:
            raise InvalidInput(f"a line of {len(raw)} bytes (at most {MAX_LINE_BYTES})")
        obj = _json(raw)
        record, events, _ = from_json(obj, self._max_bytes)  # checked here to report the line; the owner checks again
        if record.id in self._memories:
            raise InvalidInput(f"memory id {record.id} is on line {self._memories[record.id]} already")
        for h in events:
            if h.id in self._events:
                raise InvalidInput(f"history event id {h.id} is on line {self._events[h.id]} already")
        self._memories[record.id] = number
        self._events.update((h.id, number) for h in events)
        if obj.get("user_id") in self._remap:
            obj["user_id"] = self._remap[obj["user_id"]]
        return obj


def _json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"not valid UTF-8 (byte {e.start + 1}); export files are UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInput("nested too deeply to be a memory line") from None
    except ValueError as e:
        raise InvalidInput(f"not valid JSON ({e}); the file may be truncated or corrupt") from None


def _total(head: dict[str, Any]) -> int:
    """The header's count of memories (for the progress bar), 0 when it has none that is a number."""
    counts = head.get("counts")
    total = counts.get("memories") if isinstance(counts, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else 0


async def import_command(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    from milvus_memory_mcp.core.transfer import check_header

    path = Path(args.file)
    try:
        remap = _remaps(args.remap_user_id)
        with path.open("rb") as f:
            first = f.readline()
        try:
            head = check_header(_json(first))
        except InvalidInput:
            raise InvalidInput(f"{path}: line 1 is not a JSON export header") from None
    except OSError as e:
        print(f"milvus-memory-mcp import: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    except InvalidInput as e:
        print(f"milvus-memory-mcp import: {e}", file=sys.stderr)
        return 1
    max_bytes = session.settings.max_memory_bytes
    malformed: list[tuple[int, str]] = []
    if args.strict:
        malformed = [(n, str(v)) for n, v, _ in Lines(path, remap, max_bytes).read() if isinstance(v, InvalidInput)]
    counts = {"imported": 0, "skipped": 0}
    held_back = bool(malformed)  # --strict found some: nothing is sent
    if not held_back:
        batch: list[tuple[int, dict[str, Any]]] = []
        size = 0  # the batch's bytes in the file

        async def send() -> None:
            nonlocal size
            result = await session.import_batch([obj for _, obj in batch], args.on_conflict, head.get("embedder"))
            _add(counts, result)
            malformed.extend((batch[r["index"]][0], str(r["error"])) for r in result.get("refused", []))
            bar.update(len(batch))
            batch.clear()
            size = 0

        try:
            with progress_bar(_total(head), "import") as bar:
                for number, parsed, length in Lines(path, remap, max_bytes).read():
                    if isinstance(parsed, InvalidInput):
                        malformed.append((number, str(parsed)))
                    else:
                        if batch and size + length > MAX_BATCH_BYTES:  # a request the owner reads whole
                            await send()
                        batch.append((number, parsed))
                        size += length
                    if len(batch) >= BATCH:
                        await send()
                if batch:
                    await send()
        except MemoryServiceError as e:
            print(f"milvus-memory-mcp import: {e} (imported so far: {counts['imported']})", file=sys.stderr)
            return 1
    malformed.sort()
    for number, message in malformed[:MAX_REPORTED]:
        print(printable(f"{path}: line {number}: {message}"), file=sys.stderr)
    if len(malformed) > MAX_REPORTED:
        print(f"{path}: {len(malformed) - MAX_REPORTED} more malformed lines", file=sys.stderr)
    result = {**counts, "malformed": [{"line": n, "error": m} for n, m in malformed]}
    if args.json:
        out.write(json_text(json.dumps(result, indent=2, ensure_ascii=False)) + "\n")
    else:
        note = f"; {len(malformed)} malformed line(s) {'(nothing imported: --strict)' if held_back else 'skipped'}"
        out.write(
            f"Imported {counts['imported']} memories, skipped {counts['skipped']} already present"
            + (note if malformed else "")
            + ".\n"
        )
    return 1 if malformed else 0


def _add(counts: dict[str, int], more: dict[str, Any]) -> None:
    for key in counts:
        counts[key] += int(more.get(key, 0))
