"""The token file is read again when it changes: a removed token stops working at once, a new one
works without a restart, and a broken file refuses every token until it is fixed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2

from .test_http import ALICE, BOB, TOKENS, start_server, wait_for_port
from .test_http_sessions import initialize


def test_token_file_changes_apply_without_a_restart(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    carol = "carol-token-0123456789abcdef"
    proc, log = start_server(tmp_path, "--transport", "streamable-http", "--port", "0", "--auth-tokens", str(tokens))
    try:
        base = f"http://127.0.0.1:{wait_for_port(proc, log, time.monotonic() + 60)}/mcp"
        check(tokens, base, carol)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "token file changed and is refused" in text and carol not in text and ALICE not in text


def check(tokens: Path, base: str, carol: str) -> None:
    with httpx2.Client(timeout=30) as http:
        assert initialize(http, base, ALICE).status_code == 200
        assert initialize(http, base, BOB).status_code == 200
        assert initialize(http, base, carol).status_code == 401

        tokens.write_text(json.dumps({ALICE: TOKENS[ALICE], carol: {"user_id": "carol", "access": "read-only"}}))
        assert initialize(http, base, BOB).status_code == 401  # removed: refused at once
        assert initialize(http, base, ALICE).status_code == 200
        assert initialize(http, base, carol).status_code == 200  # added: no restart needed

        tokens.write_text("{ not json")
        assert initialize(http, base, ALICE).status_code == 401  # a broken file refuses every token
        time.sleep(0.01)
        tokens.write_text(json.dumps({ALICE: TOKENS[ALICE]}))
        assert initialize(http, base, ALICE).status_code == 200
        assert initialize(http, base, carol).status_code == 401
