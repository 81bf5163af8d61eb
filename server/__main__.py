"""Command line: `milvus-memory-mcp [serve|demo|doctor] [--flags]` (flags mirror MEMORY_* variables), the
owner's commands (list, search, show, history, delete, restore, stats: server/cli.py; export, import;
reembed),
and the client hooks (`hook recall|capture`: server/hooks.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from milvus_memory_mcp.errors import MemoryServiceError

if TYPE_CHECKING:  # `hook recall` runs on every prompt: it imports neither pydantic nor the settings
    from milvus_memory_mcp.settings import Settings


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    from milvus_memory_mcp.settings import Settings

    for name, field in Settings.model_fields.items():
        # A bool flag alone means true (`--allow-unauthenticated`); it also takes an explicit value.
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if field.annotation is bool else {}
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=f"{field.description} [env MEMORY_{name.upper()}]",
            **switch,
        )


def _cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    from milvus_memory_mcp import __version__, cli_reembed, cli_transfer
    from milvus_memory_mcp.cli import add_commands

    parser = argparse.ArgumentParser(prog="milvus-memory-mcp", description="Long-term memory MCP server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="Run the MCP server (default; stdio unless --transport says otherwise).")
    _add_setting_flags(serve_p)
    demo_p = sub.add_parser("demo", help="Replay the reference walk-through against a fresh server and print it.")
    _add_setting_flags(demo_p)
    doctor_p = sub.add_parser(
        "doctor", help="Check that Milvus agrees with the history's record (exit 1 if not); --repair fixes it."
    )
    doctor_p.add_argument("--repair", action="store_true", help="Re-embed; rewrite Milvus from the history's record.")
    doctor_p.add_argument("--data-dir", help="The data dir [env MEMORY_DATA_DIR]; other settings: MEMORY_* variables.")
    ui_p = sub.add_parser(
        "ui", help="Serve only the web dashboard, on 127.0.0.1 (--port, default 8765); see the README."
    )
    _add_setting_flags(ui_p)
    add_commands(sub)
    cli_transfer.add_commands(sub)
    cli_reembed.add_command(sub)
    hook_p = sub.add_parser("hook", help="Client hooks (Claude Code): recall before a prompt, capture at session end.")
    hook_p.add_argument(
        "hook",
        choices=["recall", "capture"],
        help="recall: UserPromptSubmit (flags: --data-dir, --user-id, "
        "--max-tokens); capture: SessionEnd/Stop (every setting flag).",
    )
    _add_setting_flags(hook_p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hook"] and "recall" in argv:  # on every prompt: no pydantic, no settings model
        from milvus_memory_mcp.hooks import recall_main

        rest = list(argv[1:])
        rest.remove("recall")
        return recall_main(rest, sys.stdin, sys.stdout, sys.stderr)
    import logging

    from milvus_memory_mcp.cli import COMMANDS
    from milvus_memory_mcp.private import UMASK, secure_store
    from milvus_memory_mcp.settings import Settings

    args = _parser().parse_args(argv)
    if args.command == "hook":
        return _hook(args)
    command = args.command or "serve"
    if command in (*COMMANDS, "export", "import", "reembed"):
        overrides: dict[str, Any] = {"data_dir": args.data_dir} if args.data_dir else {}
    else:
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "repair") and v is not None}
    fix = bool(getattr(args, "repair", False))  # doctor's own flag, not a setting
    if command == "ui":  # the dashboard alone: loopback only, its own default port
        from milvus_memory_mcp.ui.command import DEFAULT_PORT

        if overrides.get("host") not in (None, "127.0.0.1"):
            print("milvus-memory-mcp ui: serves on 127.0.0.1 only (elsewhere: serve --transport ...).", file=sys.stderr)
            return 2
        overrides.update(host="127.0.0.1", transport="streamable-http", port=overrides.get("port", DEFAULT_PORT))

    try:
        settings = Settings.load(**overrides)
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp: {e}", file=sys.stderr)
        return 2
    # The owner's commands print results: only warnings on stderr, unless MEMORY_LOG_LEVEL says otherwise.
    quiet = command in (*COMMANDS, "export", "import", "reembed") and "MEMORY_LOG_LEVEL" not in os.environ
    logging.basicConfig(
        level="WARNING" if quiet else settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Memories are private: every file and directory this process (and Milvus Lite in it) creates
    # is for this account only, and a store left open to others by an earlier release is tightened.
    os.umask(UMASK)
    if command != "demo":  # the demo uses a throw-away data dir of its own
        try:
            secure_store(settings)
        except MemoryServiceError as e:
            print(f"milvus-memory-mcp: {e}", file=sys.stderr)
            return 1
    import anyio

    if command == "demo":
        from milvus_memory_mcp.demo import run_demo

        return anyio.run(run_demo, overrides)
    if command == "doctor":
        from milvus_memory_mcp import doctor

        return anyio.run(lambda: doctor.run(settings, fix=fix, out=sys.stdout))
    if command == "export":
        from milvus_memory_mcp.cli_transfer import export_command

        return anyio.run(_guarded, export_command, settings, args)
    if command in (*COMMANDS, "import", "reembed"):
        return anyio.run(_guarded, _owner_command, settings, args)
    from milvus_memory_mcp.embedders import make_embedder

    try:
        embedder = make_embedder(settings)
        if _cores() > 1:
            # The local model loads in its own process, on another core, while the MCP SDK is
            # imported below (~0.7 s). On one core it would delay the handshake: it waits for it.
            embedder.start()
        if command == "ui":
            from milvus_memory_mcp.ui.command import run_ui as run
        else:  # not the dashboard's Jinja2 (~15 ms) before the handshake: `serve` imports it for HTTP only
            from milvus_memory_mcp.app import serve as run

        anyio.run(run, settings, embedder)
    except KeyboardInterrupt:
        pass
    except MemoryServiceError as e:  # a refused set-up (e.g. no auth on a public address)
        print(f"milvus-memory-mcp: {e}", file=sys.stderr)
        return 2
    return 0


def _hook(args: argparse.Namespace) -> int:
    """A hook never fails the user's turn: exit 0 whatever happens (reasons on stderr)."""
    from milvus_memory_mcp.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "hook") and v is not None}
    try:
        settings = Settings.load(**overrides)
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp hook {args.hook}: {e}", file=sys.stderr)
        return 0
    from milvus_memory_mcp.hooks import capture_main

    return capture_main(settings, sys.stdin, sys.stderr)


async def _owner_command(settings: Settings, args: argparse.Namespace) -> int:
    from milvus_memory_mcp.cli import run
    from milvus_memory_mcp.cli_reembed import reembed_command
    from milvus_memory_mcp.cli_session import session
    from milvus_memory_mcp.cli_transfer import import_command

    async with session(settings) as owner:
        if args.command == "import":
            return await import_command(owner, args, sys.stdout)
        if args.command == "reembed":
            return await reembed_command(owner, args, sys.stdout)
        return await run(owner, args, sys.stdout)


async def _guarded(command: Any, settings: Settings, args: argparse.Namespace) -> int:
    try:
        return await command(settings, args)
    except MemoryServiceError as e:
        print(f"milvus-memory-mcp {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
