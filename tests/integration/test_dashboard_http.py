"""The dashboard over plain HTTP (no browser): a real server process on 127.0.0.1 with bearer tokens.

Escaping of hostile texts, CSRF and Origin checks, read-only tokens refused server-side, scope
isolation between tokens, bad input answered with a clear message, the run's login token of `ui`.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from markupsafe import escape

from milvus_memory_mcp.ui.session import MAX_SESSIONS

from ..support.dashboard import (
    ALICE,
    ALICE_READER,
    ATTRIBUTE,
    BOB,
    IMAGE,
    SCRIPT,
    Running,
    csrf_of,
    login,
    running_dashboard,
    server,
    wait_for,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_dashboard(tmp_path_factory.mktemp("dashboard")) as r:
        yield r


def client_for(running: Running, token: str) -> httpx2.Client:
    client = httpx2.Client(base_url=running.base, timeout=60)
    assert login(client, token).status_code == 303
    return client


def history_of(client: httpx2.Client, memory_id: str) -> list[str]:
    page = client.get(f"/ui/memory/{memory_id}").text
    return re.findall(r'<span class="badge (?:add|update|delete|restore|none)">(\w+)</span>', page)


def test_login_sets_a_strict_http_only_cookie_and_pages_need_it(running: Running) -> None:
    anonymous = httpx2.Client(base_url=running.base)
    page = anonymous.get("/ui/memories")
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
    client = httpx2.Client(base_url=running.base)
    answer = login(client, ALICE)
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert ALICE not in cookie and "Secure" not in cookie  # a random session id, never the token; plain HTTP
    behind_tls = httpx2.Client(base_url=running.base, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.get("/ui/login").headers["set-cookie"]  # a TLS proxy on loopback in front
    assert client.get("/ui/memories").status_code == 200
    wrong = httpx2.Client(base_url=running.base)
    refused = login(wrong, "not-a-token-at-all-0123456789")
    assert refused.status_code == 401 and "not valid" in refused.text


def test_hostile_texts_render_as_text_on_every_page(running: Running) -> None:
    client = client_for(running, ALICE)
    pages = [
        client.get("/ui/memories").text,
        client.get("/ui/search", params={"q": "hostile note"}).text,
        client.get(f"/ui/memory/{running.ids['script']}").text,
        client.get(f"/ui/memory/{running.ids['attribute']}").text,
        client.get("/ui/stats").text,
    ]
    for page in pages:
        assert "<script>window" not in page and "<img src=x" not in page and 'onmouseover="window' not in page
        assert 'onfocus="window' not in page and "<b>bold</b>" not in page
        assert "<script" not in page.replace('<script src="/ui/static/htmx.min.js" defer></script>', "")
    listing = pages[0]
    for text in (SCRIPT, ATTRIBUTE, IMAGE):
        assert str(escape(text)) in listing
    assert "&lt;b&gt;bold&lt;/b&gt;" in listing
    assert str(escape(SCRIPT)) in pages[2]  # in the edit box too, escaped


def test_security_headers_and_host_check(running: Running) -> None:
    client = client_for(running, ALICE)
    page = client.get("/ui/memories")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    rebinding = httpx2.get(running.base + "/ui/login", headers={"Host": "evil.example:80"})
    assert rebinding.status_code == 421
    assert httpx2.get(running.base + "/ui/static/htmx.min.js").status_code == 200


def test_forms_need_the_session_csrf_token_and_a_same_site_origin(running: Running) -> None:
    client = client_for(running, ALICE)
    memory_id = running.ids["peanuts"]
    page = client.get(f"/ui/memory/{memory_id}").text
    token = csrf_of(page)
    for data, headers in (
        ({"data": "forged"}, {}),
        ({"data": "forged", "csrf": "wrong"}, {}),
        ({"data": "forged", "csrf": token}, {"Origin": "http://evil.example"}),
    ):
        answer = client.post(f"/ui/memory/{memory_id}/edit", data=data, headers=headers)
        assert answer.status_code == 403 and "forged" in answer.text.lower()
    assert client.post(f"/ui/memory/{memory_id}/delete", data={}).status_code == 403
    assert history_of(client, memory_id) == ["ADD"]  # nothing changed
    # The login form: the nonce cookie and field must match.
    fresh = httpx2.Client(base_url=running.base)
    assert fresh.post("/ui/login", data={"token": ALICE, "nonce": "x"}).status_code == 403


def test_read_only_token_sees_no_buttons_and_its_writes_are_refused(running: Running) -> None:
    reader = client_for(running, ALICE_READER)
    memory_id = running.ids["piano"]
    page = reader.get(f"/ui/memory/{memory_id}").text
    assert "Alice plays jazz piano" in page and "read-only" in page
    assert "/edit" not in page and "/delete" not in page and "/restore" not in page
    token = csrf_of(page)  # the logout form's: a valid token for this session
    for action, data in (("edit", {"data": "changed"}), ("delete", {}), ("restore", {})):
        answer = reader.post(f"/ui/memory/{memory_id}/{action}", data={"csrf": token, **data})
        assert answer.status_code == 403 and "read-only" in answer.text
    assert history_of(reader, memory_id) == ["ADD"]


def test_a_token_sees_only_its_own_scope(running: Running) -> None:
    bob = client_for(running, BOB)
    listing = bob.get("/ui/memories").text
    assert "vintage synthesizers" in listing and "Alice" not in listing
    assert "Alice" not in bob.get("/ui/search", params={"q": "piano"}).text
    theirs = bob.get(f"/ui/memory/{running.ids['piano']}")
    assert theirs.status_code == 404 and "jazz" not in theirs.text
    other = bob.get("/ui/memories", params={"user_id": "alice"})
    assert other.status_code == 403 and "limited to user_id" in other.text
    stats = bob.get("/ui/stats").text
    assert "alice" not in stats and "user_id=bob" in stats
    token = csrf_of(listing)
    edit = bob.post(f"/ui/memory/{running.ids['piano']}/edit", data={"csrf": token, "data": "hijacked"})
    assert edit.status_code == 404
    assert history_of(client_for(running, ALICE), running.ids["piano"]) == ["ADD"]


def test_bad_input_gets_a_clear_message_and_changes_nothing(running: Running) -> None:
    client = client_for(running, ALICE)
    memory_id = running.ids["piano"]
    token = csrf_of(client.get(f"/ui/memory/{memory_id}").text)
    answer = client.post(f"/ui/memory/{memory_id}/edit", data={"csrf": token, "data": "x", "metadata": "{nope"})
    assert answer.status_code == 400 and "metadata is not JSON" in answer.text
    answer = client.post(f"/ui/memory/{memory_id}/edit", data={"csrf": token, "data": "   "})
    assert answer.status_code == 400
    assert client.get("/ui/memories", params={"filters": "[1]"}).status_code == 400
    answer = client.get(f"/ui/memory/{memory_id}", params={"as_of": "yesterday"})
    assert answer.status_code == 400 and "as_of is not a date" in answer.text
    assert client.get("/ui/memory/no-such-id").status_code in (400, 404)
    assert history_of(client, memory_id) == ["ADD"]
    assert client.get("/ui/memories").status_code == 200  # the server is still there


def test_edit_restore_delete_and_the_charts(running: Running) -> None:
    client = client_for(running, ALICE)
    memory_id = running.ids["image"]
    token = csrf_of(client.get(f"/ui/memory/{memory_id}").text)
    done = client.post(f"/ui/memory/{memory_id}/edit", data={"csrf": token, "data": "Alice paints", "metadata": ""})
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "<ins>Alice paints</ins>" in page and "Saved" in page
    event_ids = re.findall(r'name="event_id" value="([^"]+)"', page)
    assert len(event_ids) == 1  # the ADD (the latest event is where it stands already)
    assert client.post(f"/ui/memory/{memory_id}/restore", data={"csrf": token, "event_id": event_ids[0]}).status_code
    assert client.post(f"/ui/memory/{memory_id}/delete", data={"csrf": token}).status_code == 303
    assert history_of(client, memory_id) == ["DELETE", "RESTORE", "UPDATE", "ADD"]
    stats = client.get("/ui/stats").text
    assert stats.count("<svg") == 1 and "1 deleted" in stats
    # Today's bar (a RESTORE counts as an update):
    assert re.search(r"5 added, 2 updated, 1 deleted", html.unescape(stats))
    assert client.post(f"/ui/memory/{memory_id}/restore", data={"csrf": token}).status_code == 303


def test_a_token_removed_from_the_file_ends_its_sessions(running: Running) -> None:
    bob = client_for(running, BOB)
    tokens = running.log.parent / "tokens.json"
    saved = tokens.read_text()
    try:
        tokens.write_text(json.dumps({k: v for k, v in json.loads(saved).items() if k != BOB}))
        answer = bob.get("/ui/memories")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
    finally:
        tokens.write_text(saved)
    assert bob.get("/ui/memories").status_code == 303  # the session is gone, not just suspended


def test_a_flood_of_one_tokens_logins_logs_out_no_other_token(running: Running) -> None:
    alice = client_for(running, ALICE)
    flood = httpx2.Client(base_url=running.base, timeout=60)
    first = login(flood, BOB).cookies["mm_session"]
    nonce = flood.cookies["mm_login"]
    for _ in range(MAX_SESSIONS):  # as many as the whole process keeps: each a new session of bob's
        answer = flood.post("/ui/login", data={"nonce": nonce, "token": BOB, "next": ""})
        assert answer.status_code == 303
    assert alice.get("/ui/memories").status_code == 200  # alice is still logged in
    # bob's own first session made room for his later ones
    gone = httpx2.get(running.base + "/ui/memories", cookies={"mm_session": first})
    assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")


def test_ui_command_beside_a_running_server_forwards_to_it(running: Running) -> None:
    """A second process on the same data dir: the dashboard's calls go to the owner (the server)."""
    tokens = running.log.parent / "tokens.json"
    with server(running.log.parent, "ui", "--port", "0", "--auth-tokens", str(tokens), log_name="ui.log") as (
        proc,
        log,
    ):
        port = wait_for(rb"dashboard on http://127\.0\.0\.1:(\d+)/ui/", proc, log, time.monotonic() + 60).group(1)
        client = httpx2.Client(base_url=f"http://127.0.0.1:{int(port)}", timeout=60)
        assert login(client, ALICE).status_code == 303
        assert "Alice is allergic to peanuts" in client.get("/ui/memories").text
        memory_id = running.ids["peanuts"]
        token = csrf_of(client.get(f"/ui/memory/{memory_id}").text)
        edit = client.post(f"/ui/memory/{memory_id}/edit", data={"csrf": token, "data": "Alice is allergic to nuts"})
        assert edit.status_code == 303
        stats = client.get("/ui/stats").text  # the charts and last writes come from the owner too
        assert "<svg" in stats and "Alice is allergic to nuts" in stats
    owner = client_for(running, ALICE)  # the server's own dashboard shows the forwarded write
    assert history_of(owner, memory_id) == ["UPDATE", "ADD"]


def test_ui_command_without_tokens_prints_a_login_token_for_the_run(tmp_path: Path) -> None:
    with server(tmp_path, "ui", "--port", "0") as (proc, log):
        port = wait_for(rb"dashboard on http://127\.0\.0\.1:(\d+)/ui/", proc, log, time.monotonic() + 60).group(1)
        said = rb"dashboard login token for this run \(no --auth-tokens\): (\S+)"
        token = wait_for(said, proc, log, time.monotonic() + 5)
        client = httpx2.Client(base_url=f"http://127.0.0.1:{int(port)}", timeout=60)
        assert login(client, "guessed-token-0123456789abcdef").status_code == 401
        assert login(client, token.group(1).decode()).status_code == 303
        page = client.get("/ui/memories")
        assert page.status_code == 200 and "Choose a scope" in page.text  # an owner's login: every scope
        assert client.get("/mcp").status_code == 404  # the dashboard alone


def test_sse_server_without_tokens_serves_the_dashboard_beside_sse(tmp_path: Path) -> None:
    with server(tmp_path, "serve", "--transport", "sse", "--port", "0") as (proc, log):
        port = int(wait_for(rb"listening on http://127\.0\.0\.1:(\d+)/sse", proc, log, time.monotonic() + 60).group(1))
        said = rb"dashboard login token for this run \(no --auth-tokens\): (\S+)"
        token = wait_for(said, proc, log, time.monotonic() + 5).group(1).decode()
        client = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        assert client.get("/health").status_code in (200, 503)
        assert client.get("/ui/memories").status_code == 303  # no login: no memories, even on loopback
        assert login(client, token).status_code == 303
        assert client.get("/ui/stats").status_code == 200
