"""The period a question names ("in May 2023", "on December 4, 2023", "last week"), for search.

"Which hobby did Sam take up in May 2023?" is answered by what Sam said then, and a memory's
`created_at` is when it was said (now, or an add's `at` for a conversation stored later), while
its text rarely names the date ("I just started painting!"). So when a question names a period,
`core/search.py` also searches the memories created in it, and those move up
(`ranking.favour_period`). Things are told after they happen, so a period runs on for
`TELL_DAYS` after its end ("in May" is also what was said in early June), and a day starts one
day early (the plan made the day before).

Recognised, case-insensitive, in UTC: a date with its year ("December 4, 2023", "4 Dec 2023",
"4th of December, 2023", "2023-12-04"), a month with its year ("May 2023", "mid-August 2023"), a
year after in / during / of / since ("in 2010"), and "yesterday", "last week", "last month",
"last year" (up to now). A month without a year is not a period: "in May" asks as often about
plans as about the past.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from milvus_memory_mcp.filters import And, Cond, epoch_us

TELL_DAYS = 7  # a period also covers what was said this many days after it ended
DAY = timedelta(days=1)

_MONTHS = "january february march april may june july august september october november december".split()
_MONTH_OF = {name: i for i, m in enumerate(_MONTHS, 1) for name in (m, m[:3])} | {"sept": 9, "sep": 9}
_M = rf"({'|'.join(sorted(_MONTH_OF, key=len, reverse=True))})\.?"  # longest first
_Y = r"((?:19|20)\d\d)"
_D = r"(\d{1,2})(?:st|nd|rd|th)?"
_DAY_FIRST = re.compile(rf"\b{_D}\s+(?:of\s+)?{_M},?\s+{_Y}\b")
_MONTH_FIRST = re.compile(rf"\b{_M}\s+{_D},?\s+{_Y}\b")
_ISO_DAY = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)\b")
_MONTH_YEAR = re.compile(rf"\b{_M},?\s+{_Y}\b")
_YEAR = re.compile(rf"\b(?:in|during|of|since)\s+{_Y}\b")
_RELATIVE = re.compile(r"\b(yesterday|last\s+(?:week|month|year))\b")


def asked_period(text: str, now: datetime) -> tuple[datetime, datetime] | None:
    """[start, end) of the period `text` names (module docstring), or None."""
    t = text.lower()
    if m := _DAY_FIRST.search(t):
        return _day(int(m[3]), _MONTH_OF[m[2]], int(m[1]))
    if m := _MONTH_FIRST.search(t):
        return _day(int(m[3]), _MONTH_OF[m[1]], int(m[2]))
    if m := _ISO_DAY.search(t):
        return _day(int(m[1]), int(m[2]), int(m[3]))
    if m := _MONTH_YEAR.search(t):
        year, month = int(m[2]), _MONTH_OF[m[1]]
        start = _utc(date(year, month, 1))
        end = _utc(date(year + month // 12, month % 12 + 1, 1))
        return start, end + TELL_DAYS * DAY
    if m := _YEAR.search(t):
        year = int(m[1])
        return _utc(date(year, 1, 1)), _utc(date(year + 1, 1, 1)) + TELL_DAYS * DAY
    if m := _RELATIVE.search(t):
        today = _utc(now.astimezone(timezone.utc).date())
        word = m[1].split()[-1]
        if word == "yesterday":
            start = today - DAY
        elif word == "week":
            start = today - 14 * DAY
        elif word == "month":
            first = today.replace(day=1)
            start = (first - DAY).replace(day=1)
        else:
            start = today.replace(year=today.year - 1, month=1, day=1)
        return start, now + DAY
    return None


def period_conditions(period: tuple[datetime, datetime]) -> And:
    """The filter tree of memories created within `period`."""
    start, end = (epoch_us(t) for t in period)
    return And((Cond("created_at", "gte", start), Cond("created_at", "lt", end)))


def _day(year: int, month: int, day: int) -> tuple[datetime, datetime] | None:
    try:
        start = _utc(date(year, month, day))
    except ValueError:  # "February 30, 2023"
        return None
    return start - DAY, start + DAY + TELL_DAYS * DAY


def _utc(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
