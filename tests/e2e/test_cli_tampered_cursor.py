"""The owner's `list --cursor` with a tampered cursor, as a real subprocess owning the data dir: one
line naming the problem and exit code 1, no traceback (the same path as the tool and the dashboard)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import anyio
import pytest

from ..support.processes import run_cli

pytestmark = pytest.mark.anyio


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_list_with_a_tampered_cursor_says_the_cursor_is_not_valid(tmp_path: Path) -> None:
    with anyio.fail_after(240):
        # 20,000 levels: far beyond Python's recursion limit, within Linux's 128 KiB per argument.
        for raw in (json.dumps([2**70, "x"]), "[" * 20000 + "]" * 20000, '[1, "\\ud800"]'):
            returncode, _, err = await run_cli(
                tmp_path / "data", "list", "--user-id", "alice", "--cursor", cursor_of(raw)
            )
            assert returncode == 1, err
            assert "cursor is not valid: pass the next_cursor value from the previous page." in err
            assert "Traceback" not in err and "Error executing tool" not in err
