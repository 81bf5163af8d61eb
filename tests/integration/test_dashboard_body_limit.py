"""The dashboard refuses an oversized request body with 413 before reading it (by Content-Length, or
counted as a chunked body arrives), and still takes its largest legitimate form: the edit of a
memory at the largest MEMORY_MAX_MEMORY_BYTES with metadata at its limit. A real server process."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from milvus_memory_mcp.ui import FORM_BODY_LIMIT, LOGIN_BODY_LIMIT
from milvus_memory_mcp.validation import MAX_METADATA_BYTES

from ..support.dashboard import ALICE, TOKENS, csrf_of, login, seed, server, wait_for

LARGEST_TEXT = 65535  # the largest MEMORY_MAX_MEMORY_BYTES allowed
FORM = {"content-type": "application/x-www-form-urlencoded"}
MIB = 1024 * 1024


@dataclass
class Served:
    base: str
    pid: int
    log: Path
    memory_id: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("dashboard-body-limit")
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    args = ("--transport", "streamable-http", "--port", "0", "--auth-tokens", str(tokens))
    with server(tmp, "serve", *args, "--max-memory-bytes", str(LARGEST_TEXT)) as (proc, log):
        port = int(wait_for(rb"listening on http://127\.0\.0\.1:(\d+)", proc, log, time.monotonic() + 60).group(1))
        base = f"http://127.0.0.1:{port}"
        memory_id = seed(base, ALICE, [("Alice plays jazz piano on Sundays", {})])[0]
        yield Served(base, proc.pid, log, memory_id)


def peak_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found, status
    return int(found.group(1)) // 1024


def chunked(total: int, piece: int = MIB) -> Iterator[bytes]:
    """A form body of `total` bytes sent without Content-Length (chunked transfer encoding)."""
    yield b"token="
    for _ in range(total // piece):
        yield b"a" * piece


def test_an_oversized_login_is_refused_with_413_before_it_is_read_and_the_server_still_serves(
    served: Served,
) -> None:
    client = httpx2.Client(base_url=served.base, timeout=120)
    declared = client.post("/ui/login", content=b"token=" + b"a" * (20 * MIB), headers=FORM)
    assert declared.status_code == 413
    assert f"at most {LOGIN_BODY_LIMIT} bytes" in declared.text
    assert declared.headers["x-frame-options"] == "DENY"  # answered by the dashboard, its headers on
    before = peak_mib(served.pid)
    streamed = client.post("/ui/login", content=chunked(300 * MIB), headers=FORM)
    assert streamed.status_code == 413
    assert peak_mib(served.pid) - before < 100  # the 300 MiB were never kept
    # Just over the login's limit: refused; a real login, on the same connection: served.
    assert client.post("/ui/login", content=b"a" * (LOGIN_BODY_LIMIT + 1), headers=FORM).status_code == 413
    assert login(client, ALICE).status_code == 303
    assert client.get("/ui/memories").status_code == 200
    assert client.get("/health").status_code == 200
    assert "Traceback" not in served.log.read_text()


def test_an_oversized_edit_is_refused_with_413_and_changes_nothing(served: Served) -> None:
    client = httpx2.Client(base_url=served.base, timeout=120)
    assert login(client, ALICE).status_code == 303
    page = f"/ui/memory/{served.memory_id}"
    token = csrf_of(client.get(page).text)
    answer = client.post(page + "/edit", data={"csrf": token, "data": "b" * (FORM_BODY_LIMIT + 1)})
    assert answer.status_code == 413 and f"at most {FORM_BODY_LIMIT} bytes" in answer.text
    answer = client.post(page + "/edit", content=chunked(2 * FORM_BODY_LIMIT), headers=FORM)
    assert answer.status_code == 413
    assert "Alice plays jazz piano on Sundays" in client.get(page).text


def test_an_edit_at_the_largest_text_and_metadata_is_accepted(served: Served) -> None:
    client = httpx2.Client(base_url=served.base, timeout=120)
    assert login(client, ALICE).status_code == 303
    page = f"/ui/memory/{served.memory_id}"
    token = csrf_of(client.get(page).text)
    text = "\N{GRINNING FACE}" * (LARGEST_TEXT // 4)  # 4 bytes in UTF-8, 12 URL-encoded
    note = "é" * ((MAX_METADATA_BYTES - len(json.dumps({"note": ""}))) // 2)
    metadata = json.dumps({"note": note}, ensure_ascii=False, indent=4)  # typed with spaces and newlines
    assert len(json.dumps({"note": note}, ensure_ascii=False).encode()) == MAX_METADATA_BYTES
    answer = client.post(page + "/edit", data={"csrf": token, "data": text, "metadata": metadata})
    assert answer.status_code == 303, answer.text
    assert len(answer.request.content) > 200_000  # the largest legitimate form, well under the limit
    saved = client.get(answer.headers["location"]).text
    assert "Saved" in saved and text in saved
