"""The dashboard given hostile query strings and forms, over plain HTTP against a real server process:
deeply nested filters or metadata and tampered cursors get a 400 page naming the problem (as
`filters={` does), never a 500 with a RecursionError or an encoding error in the log; an as_of at
either end of the calendar is answered as the tools answer it."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator

import httpx2
import pytest

from ..support.dashboard import ALICE, Running, csrf_of, login, running_dashboard


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_dashboard(tmp_path_factory.mktemp("dashboard-hostile")) as r:
        yield r


@pytest.fixture
def alice(running: Running) -> httpx2.Client:
    client = httpx2.Client(base_url=running.base, timeout=60)
    assert login(client, ALICE).status_code == 303
    return client


def message_of(page: httpx2.Response) -> str:
    return html.unescape(" ".join(re.findall(r"<p[^>]*>([^<]*)", page.text)))


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


DEEP = {
    "5000 open lists": "[" * 5000 + "]" * 5000,
    "a value 990 lists deep": '{"tags": ' + "[" * 990 + "1" + "]" * 990 + "}",
    "400 nested ANDs": '{"AND": [' * 400 + '{"a": 1}' + "]}" * 400,
    "65 objects": '{"a": ' * 65 + "1" + "}" * 65,
}


@pytest.mark.parametrize("filters", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_filters_get_a_400_naming_the_depth(running: Running, alice: httpx2.Client, filters: str) -> None:
    for page in ("/ui/memories", "/ui/search"):
        answer = alice.get(page, params={"filters": filters, "q": "piano"})
        assert answer.status_code == 400, (page, answer.status_code)
        assert re.search(r"filters is nested \d+ levels deep \(at most 64\)\.", message_of(answer)), message_of(answer)
    log = running.log.read_text()
    assert "RecursionError" not in log and "Traceback" not in log


def test_filters_within_the_depth_still_reach_the_tools_check(alice: httpx2.Client) -> None:
    answer = alice.get("/ui/memories", params={"filters": '{"AND": [' * 10 + '{"a": 1}' + "]}" * 10})
    assert answer.status_code == 400 and "filters are nested deeper than 8 levels" in message_of(answer)
    answer = alice.get("/ui/memories", params={"filters": '{"category": "hobbies"}'})
    assert answer.status_code == 200 and "Alice plays jazz piano on Sundays" in answer.text


def test_deeply_nested_metadata_in_the_edit_form_gets_a_400_and_changes_nothing(
    running: Running, alice: httpx2.Client
) -> None:
    memory_id = running.ids["piano"]
    token = csrf_of(alice.get(f"/ui/memory/{memory_id}").text)
    metadata = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = alice.post(f"/ui/memory/{memory_id}/edit", data={"csrf": token, "data": "x", "metadata": metadata})
    assert answer.status_code == 400 and "metadata is nested 5001 levels deep (at most 64)." in message_of(answer)
    assert "Alice plays jazz piano on Sundays" in alice.get(f"/ui/memory/{memory_id}").text
    assert "RecursionError" not in running.log.read_text()


TAMPERED = {
    "int beyond 64 bits": cursor_of(json.dumps([2**70, "x"])),
    "deeply nested JSON": cursor_of("[" * 5000 + "]" * 5000),
    "lone surrogate in the id": cursor_of('[1, "\\ud800"]'),
}


@pytest.mark.parametrize("cursor", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_cursor_gets_a_400_saying_the_cursor_is_not_valid(
    running: Running, alice: httpx2.Client, cursor: str
) -> None:
    answer = alice.get("/ui/memories", params={"cursor": cursor})
    assert answer.status_code == 400
    assert "cursor is not valid: pass the next_cursor value from the previous page." in message_of(answer)
    log = running.log.read_text()
    assert "Traceback" not in log and "UnicodeEncodeError" not in log and "OverflowError" not in log


CALENDAR_ENDS = {
    "year 1 at +01:00 (year 0 in UTC)": (
        "0001-01-01T00:00:00+01:00",
        "0001-01-01 00:00+01:00",
        "It did not exist yet.",
    ),
    "year 9999 at -01:00 (year 10000 in UTC)": ("9999-12-31T23:59:59-01:00", "9999-12-31 23:59-01:00", "As of its ADD"),
}


@pytest.mark.parametrize(("as_of", "shown", "belief"), CALENDAR_ENDS.values(), ids=CALENDAR_ENDS.keys())
def test_an_as_of_beyond_the_utc_calendar_shows_the_belief_then_as_the_tools_take_it(
    running: Running, alice: httpx2.Client, as_of: str, shown: str, belief: str
) -> None:
    answer = alice.get(f"/ui/memory/{running.ids['piano']}", params={"as_of": as_of})
    assert answer.status_code == 200, message_of(answer)
    said = message_of(answer)
    assert f"At {shown}:" in said and belief in said, said
    assert "OverflowError" not in running.log.read_text()
