"""The owner's commands: list, search, show, history, delete, restore, stats (and their output).

Each command is a tool call (or `stats`) through `cli_session`, so the scope rules, validation and
sharing are the server's own; flags mirror the tools' arguments. Output: a readable table, or the
tool's JSON with `--json`; stored text reaches the terminal only through `terminal.printable` (the
table and plain output) or `terminal.json_text` (`--json`), its control characters escaped.
Settings other than the data dir come from MEMORY_* variables, as for the server that may own the
data dir (the two must agree).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TextIO

from milvus_memory_mcp.cli_session import CommandFailed, Session
from milvus_memory_mcp.errors import InvalidInput, MemoryServiceError
from milvus_memory_mcp.terminal import json_text, printable
from milvus_memory_mcp.validation import parse_json_object

Handler = Callable[[Session, argparse.Namespace], Coroutine[Any, Any, Any]]
COMMANDS = ("list", "search", "show", "history", "delete", "restore", "stats")


def _json_object(text: str) -> dict[str, Any]:
    try:
        return parse_json_object(text, "--filters")
    except InvalidInput as e:  # argparse names the option: "argument --filters: --filters is not JSON: ..."
        raise argparse.ArgumentTypeError(str(e).removeprefix("--filters ")) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="Print the result as JSON (for scripts).")
    p.add_argument("--data-dir", help="The data dir [env MEMORY_DATA_DIR]; other settings: MEMORY_* variables.")


def _scope(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user-id", help="Whose memories (default: MEMORY_USER_ID).")
    p.add_argument("--agent-id", help="The agent's memories.")
    p.add_argument("--run-id", help="One run's memories.")
    p.add_argument("--filters", type=_json_object, help='Conditions as JSON, e.g. \'{"category": "work"}\'.')
    p.add_argument("--as-of", help="ISO-8601 time: the memories as they stood then.")


def add_commands(sub: Any) -> None:
    """The owner's subcommands on the top-level parser's subparsers."""
    p = sub.add_parser("list", help="List a scope's memories, oldest first.", description="List a scope's memories.")
    _scope(p)
    p.add_argument("--limit", type=int, default=100, help="Page size (1-1000).")
    p.add_argument("--cursor", help="next_cursor of the previous page.")
    _common(p)
    p = sub.add_parser("search", help="Search a scope's memories.", description="Search a scope's memories.")
    p.add_argument("query", help="What to recall, in natural language.")
    _scope(p)
    p.add_argument("--limit", type=int, default=10, help="Most results (1-100).")
    p.add_argument("--threshold", type=float, help="Drop results scoring below this.")
    _common(p)
    for name, text in (
        ("show", "Show one memory."),
        ("history", "Show one memory's history, oldest first."),
        ("delete", "Delete one memory (restore brings it back)."),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("id", help="The memory's id.")
        _common(p)
    text = "Bring a memory back to its state after EVENT (default: before its last change)."
    p = sub.add_parser("restore", help="Undo changes to a memory, deletion included.", description=text)
    p.add_argument("id", help="The memory's id.")
    p.add_argument("event", nargs="?", help="A history event's id (see `history ID`).")
    _common(p)
    p = sub.add_parser(
        "stats", help="Memories per scope, store sizes, embedder, versions, pending writes.", description="Overview."
    )
    _common(p)


async def run(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    """Run one owner command; 1 when it failed (its message on stderr)."""
    try:
        result = await HANDLERS[args.command](session, args)
    except (CommandFailed, MemoryServiceError) as e:
        print(f"milvus-memory-mcp {args.command}: {printable(e)}", file=sys.stderr)
        return 1
    if args.json:
        out.write(json_text(json.dumps(result, indent=2, ensure_ascii=False)) + "\n")
    else:
        out.write(RENDER[args.command](result, args))
    return 0


def _scope_args(a: argparse.Namespace) -> dict[str, Any]:
    return {"user_id": a.user_id, "agent_id": a.agent_id, "run_id": a.run_id, "filters": a.filters, "as_of": a.as_of}


HANDLERS: dict[str, Handler] = {
    "list": lambda s, a: s.call("list_memories", limit=a.limit, cursor=a.cursor, **_scope_args(a)),
    "search": lambda s, a: s.call(
        "search_memories", query=a.query, limit=a.limit, threshold=a.threshold, **_scope_args(a)
    ),
    "show": lambda s, a: s.call("get_memory", memory_id=a.id),
    "history": lambda s, a: s.call("memory_history", memory_id=a.id),
    "delete": lambda s, a: s.call("delete_memory", memory_id=a.id),
    "restore": lambda s, a: s.call("restore_memory", memory_id=a.id, event_id=a.event),
    "stats": lambda s, a: s.stats(),
}


# rendering


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _scope_of(m: dict[str, Any]) -> str:
    return " ".join(f"{k.split('_')[0]}={m[k]}" for k in ("user_id", "agent_id", "run_id") if m.get(k))


def table(headers: list[str], rows: list[list[str]], wide: int) -> str:
    """Columns padded to their widest cell; column `wide` is cut to fit the terminal. Cells are
    `printable` (a newline shows as `\\n`), runs of other white space one space."""
    rows = [[" ".join(printable(c).split()) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    room = shutil.get_terminal_size((120, 24)).columns - sum(w + 2 for i, w in enumerate(widths) if i != wide)
    widths[wide] = max(20, min(widths[wide], room))
    lines = []
    for r in [headers, ["-" * w for w in widths], *rows]:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths, strict=True)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _memories(result: dict[str, Any], args: argparse.Namespace) -> str:
    items = result.get("results", [])
    scored = args.command == "search"
    headers = (["score"] if scored else []) + ["id", "memory", "scope", "updated"]
    rows = [
        ([f"{m['score']:.3f}"] if scored else []) + [m["id"], m["memory"], _scope_of(m), _when(m.get("updated_at"))]
        for m in items
    ]
    text = table(headers, rows, 2 if scored else 1) if rows else "No memories.\n"
    if result.get("next_cursor"):
        text += f"More: --cursor {printable(result['next_cursor'])}\n"
    return text


def _show(m: dict[str, Any], args: argparse.Namespace) -> str:
    fields = [
        ("id", m["id"]),
        ("memory", m["memory"]),
        ("scope", _scope_of(m)),
        ("metadata", json_text(json.dumps(m.get("metadata") or {}, ensure_ascii=False))),
        ("created", _when(m.get("created_at"))),
        ("updated", _when(m.get("updated_at"))),
    ]
    return "".join(f"{k:<9} {printable(v)}\n" for k, v in fields)


def _history(result: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        [
            _when(e.get("updated_at")),
            e["event"],
            e.get("new_memory") or e.get("old_memory") or "",
            e.get("actor") or "",
            e["id"],
        ]
        for e in result.get("events", [])
    ]
    return f"Memory {printable(result['memory_id'])}\n" + table(
        ["when", "event", "memory", "actor", "event id"], rows, 2
    )


def _stats(s: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"data dir        {s['data_dir']} (collection {s['collection']})",
        f"memories        {s['memories']} live, {s['deleted']} deleted, {s['events']} history events",
        f"pending writes  {s['pending_writes']}",
        f"embedder        {s['embedder']['model']} ({s['embedder']['dimensions']} dimensions)",
        "store sizes     " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in s["store_bytes"].items()),
        "versions        " + ", ".join(f"{k} {v}" for k, v in s["versions"].items() if v),
    ]
    if r := s.get("reembed_in_progress"):
        lines.append(f"reembed         into {r['collection']} with {r['model']}: {r['done']}/{r['total']} (unfinished)")
    rows = [[_scope_of(x) or "(none)", str(x["live"]), str(x["deleted"])] for x in s["scopes"]]
    return (
        "\n".join(printable(line) for line in lines)
        + "\n\n"
        + (table(["scope", "live", "deleted"], rows, 0) if rows else "No memories.\n")
    )


RENDER: dict[str, Callable[[dict[str, Any], argparse.Namespace], str]] = {
    "list": _memories,
    "search": _memories,
    "show": _show,
    "history": _history,
    "delete": lambda r, a: f"{printable(r['message'])}\n",
    "restore": lambda r, a: "Restored.\n" + _show(r, a),
    "stats": _stats,
}
