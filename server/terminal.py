"""Stored text made safe to print on a terminal (the owner's commands: server/cli.py, cli_transfer.py).

Memories, metadata, scope values and history entries are written by agents and may hold terminal
control characters: ESC and BEL start sequences that move the cursor, erase lines, set the window
title or (OSC 52) write the clipboard, and the C1 controls (U+0080-U+009F, e.g. U+009B CSI) act
alone. What the CLI prints for a human goes through `printable`; its JSON through `json_text`.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls: Unicode's category Cc, everything a terminal may act on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What json.dumps(..., ensure_ascii=False) leaves raw: it escapes only U+0000-U+001F.
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def printable(value: object) -> str:
    """`value` as text with every control character shown as an escape (`\\x1b`, `\\x9b`, `\\n`,
    `\\t`): one line, and nothing the terminal acts on. For people, not for scripts."""
    return _CONTROL.sub(_escape, str(value))


def json_text(text: str) -> str:
    """JSON text (from json.dumps) with DEL and the C1 controls as \\u escapes too: the same value
    for any JSON reader, and nothing a terminal acts on. Exact: in JSON such characters occur only
    inside strings, where `\\u009b` means the character itself."""
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


# Line and paragraph separators: not control characters, but line breaks to str.splitlines and JavaScript.
_SEPARATORS = re.compile("[\u2028\u2029]")


def one_line(value: object) -> str:
    """`value` as `printable` shows it, and U+2028 / U+2029 as `\\u2028` / `\\u2029`: exactly one line
    for any reader, for texts that show one stored value per line (MCP resources, hook context)."""
    return _SEPARATORS.sub(lambda m: f"\\u{ord(m[0]):04x}", printable(value))
