"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright (no browser
download), against a real server process on a 127.0.0.1 port.

Skipped when /usr/bin/chromium is missing, except when MILVUS_MEMORY_TEST_BROWSER=required (CI).
Screenshots of each page go to tests/.screenshots/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.dashboard import ALICE, ALICE_READER, BOB, SCRIPT, Running, running_dashboard

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / ".screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    if os.environ.get("MILVUS_MEMORY_TEST_BROWSER") == "required":
        pytest.fail(f"MILVUS_MEMORY_TEST_BROWSER=required but {CHROMIUM} is missing", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra's playwright is not installed")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_dashboard(tmp_path_factory.mktemp("browser")) as r:
        yield r


@pytest.fixture(scope="module")
def browser(running: Running) -> Iterator[Any]:
    """After `running`: the sync API keeps an event loop running, so the server is seeded first."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One logged-in browser context; records script dialogs and page errors (a hostile text must cause none)."""

    def __init__(self, browser: Any, running: Running, token: str) -> None:
        self.base = running.base
        self.context = browser.new_context(viewport={"width": 1200, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.goto(self.base + "/ui/memories")
        assert "/ui/login" in self.page.url
        self.page.fill("input[name=token]", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/ui/memories$"))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()  # hx-confirm's "Delete this memory?" is the only one expected

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def pwned(self) -> Any:
        return self.page.evaluate("window.__pwned")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def test_login_list_search_edit_restore_delete(browser: Any, running: Running) -> None:
    login_page = browser.new_page()
    login_page.goto(running.base + "/ui/login")
    SHOTS.mkdir(exist_ok=True)
    login_page.screenshot(path=str(SHOTS / "login.png"))
    login_page.close()

    alice = Visit(browser, running, ALICE)
    page = alice.page
    # The list: every memory, hostile ones shown as text, no script run.
    rows = page.locator("table.memories tbody tr")
    assert rows.count() == 5
    assert page.get_by_text(SCRIPT).count() == 1
    page.locator("table.memories tbody tr").nth(3).hover()  # the onmouseover text's row
    assert alice.pwned() is None and alice.dialogs == []
    alice.shot("list")

    # Search: the same hybrid search as the tool, with scores.
    page.click("nav >> text=Search")
    page.fill("input[name=q]", "which instrument does she play")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("table.memories td.num")
    first = page.locator("table.memories tbody tr").first
    assert "jazz piano" in first.inner_text()
    assert 0 < float(first.locator("td.num").inner_text()) <= 1
    alice.shot("search")

    # A memory: a bad edit is refused with its reason; a good one shows as an UPDATE with its diff.
    first.locator("a").click()
    page.wait_for_selector("ol.timeline")
    memory_url = page.url
    page.fill("input[name=metadata]", "{not json")
    page.click("form.edit button[type=submit]")
    page.wait_for_selector("p.error")
    assert "metadata is not JSON" in page.locator("p.error").inner_text()
    page.goto(memory_url)
    page.fill("textarea[name=data]", "Alice plays jazz piano and guitar on Sundays")
    page.click("form.edit button[type=submit]")
    page.wait_for_selector("p.done")
    assert page.url.endswith("?done=updated")  # the boosted post followed the redirect, address bar too
    events = page.locator("ol.timeline .badge")
    assert [events.nth(i).inner_text() for i in range(events.count())] == ["UPDATE", "ADD"]
    assert page.locator("ol.timeline ins").first.inner_text().strip() == "and guitar"
    assert "token:user_id=alice (dashboard)" in page.locator("ol.timeline li").first.inner_text()
    alice.shot("memory-updated")

    # as_of: what the agent believed before the memory existed, and now.
    page.fill("input[name=as_of]", "2020-01-01T00:00:00")
    page.click("section.as-of button")
    page.wait_for_selector(".belief")
    assert "did not exist yet" in page.locator(".belief").inner_text()
    page.fill("input[name=as_of]", "2100-01-01T00:00:00")
    page.click("section.as-of button")
    page.locator(".belief", has_text="and guitar").wait_for()  # (no wait_for_function: the CSP forbids eval)
    alice.shot("memory-as-of")

    # Restore to the ADD event, then delete (confirmed in a dialog), then restore the deletion.
    page.click("ol.timeline li.add button")
    page.wait_for_selector("text=Restored.")
    assert page.locator("dd.text").inner_text() == "Alice plays jazz piano on Sundays"
    page.click("button.danger")
    page.wait_for_selector(".badge.deleted")
    assert alice.dialogs and "Delete this memory" in alice.dialogs[0]
    alice.shot("memory-deleted")
    page.click("text=Restore (undo the delete)")
    page.wait_for_selector("dd.text")
    events = page.locator("ol.timeline .badge")
    assert [events.nth(i).inner_text() for i in range(events.count())] == [
        "RESTORE",
        "DELETE",
        "RESTORE",
        "UPDATE",
        "ADD",
    ]

    # Stats: counts, versions and the SVG chart of today's writes.
    page.click("nav >> text=Stats")
    page.wait_for_selector("svg.chart")
    assert "user_id=alice" in page.locator("table.scopes").inner_text()
    alice.shot("stats")
    for path in ("/ui/memories", f"/ui/memory/{running.ids['script']}", f"/ui/memory/{running.ids['attribute']}"):
        alice.go(path)
        assert alice.pwned() is None
    assert alice.pwned() is None and alice.dialogs == ["Delete this memory? Restore can bring it back."]
    alice.close()


def test_another_token_cannot_see_the_first_ones_memories(browser: Any, running: Running) -> None:
    bob = Visit(browser, running, BOB)
    text = bob.page.locator("main").inner_text()
    assert "vintage synthesizers" in text and "Alice" not in text
    page = bob.go(f"/ui/memory/{running.ids['piano']}")
    assert "No memory" in page.locator("main").inner_text() and "jazz" not in page.content()
    bob.shot("other-token-refused")
    bob.close()


def test_read_only_token_sees_no_edit_buttons(browser: Any, running: Running) -> None:
    reader = Visit(browser, running, ALICE_READER)
    page = reader.go(f"/ui/memory/{running.ids['peanuts']}")
    assert page.locator("text=read-only").count() >= 1
    assert page.locator("form.edit, button.danger, ol.timeline button").count() == 0
    reader.shot("read-only")
    reader.close()
