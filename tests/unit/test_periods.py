"""The period a question names: dates and months with their year, years, and the recent past.

A period runs on for TELL_DAYS after its end (things are told after they happen), and a day starts
one day early; a month without its year names no period.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from milvus_memory_mcp.core.periods import TELL_DAYS, asked_period, period_conditions
from milvus_memory_mcp.filters import And, Cond

NOW = datetime(2026, 11, 29, 8, 30, tzinfo=timezone.utc)
TELL = timedelta(days=TELL_DAYS)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


@pytest.mark.parametrize(
    "question",
    [
        "What did Audrey eat for dinner on October 24, 2023?",
        "what did audrey eat on 24 october 2023",
        "What did she eat on the 24th of October, 2023?",
        "What did she eat on Oct. 24th 2023",
        "what did she eat on 2023-10-24",
    ],
)
def test_a_date_with_its_year_is_that_day_from_the_day_before_to_a_week_after(question: str) -> None:
    assert asked_period(question, NOW) == (utc(2023, 10, 23), utc(2023, 10, 25) + TELL)


@pytest.mark.parametrize(
    "question", ["Which hobby did Sam take up in May 2023?", "What classes did Evan join in mid-May, 2023"]
)
def test_a_month_with_its_year_is_that_month_and_the_week_after(question: str) -> None:
    assert asked_period(question, NOW) == (utc(2023, 5, 1), utc(2023, 6, 1) + TELL)


def test_december_runs_into_the_next_year() -> None:
    assert asked_period("What did he do in December 2023?", NOW) == (utc(2023, 12, 1), utc(2024, 1, 1) + TELL)


def test_a_year_after_in_or_during_is_that_year() -> None:
    expected = (utc(2010, 1, 1), utc(2011, 1, 1) + TELL)
    assert asked_period("Which country did they visit in 2010?", NOW) == expected
    assert asked_period("where did she live during 2010", NOW) == expected


@pytest.mark.parametrize(
    ("question", "start"),
    [
        ("What did I tell you yesterday?", utc(2026, 11, 28)),
        ("anything new since last week", utc(2026, 11, 15)),
        ("What did we plan last month?", utc(2026, 10, 1)),
        ("Where did she travel last year?", utc(2025, 1, 1)),
    ],
)
def test_the_recent_past_runs_up_to_now(question: str, start: datetime) -> None:
    period = asked_period(question, NOW)
    assert period is not None and period[0] == start and period[1] > NOW


@pytest.mark.parametrize(
    "question",
    [
        "Is she going to Japan in May?",  # a month without its year: plans as often as the past
        "What are her hobbies?",
        "How many of her 2023 goals are done?",  # a year, but not the period of anything asked
        "What did she do on February 30, 2023?",  # no such day
        "Call me at 2023 Main Street",
    ],
)
def test_no_period_is_read_into_a_question_that_names_none(question: str) -> None:
    assert asked_period(question, NOW) is None


def test_the_period_filters_on_creation_time_in_microseconds() -> None:
    tree = period_conditions((utc(2023, 5, 1), utc(2023, 6, 8)))
    assert tree == And(
        (Cond("created_at", "gte", 1_682_899_200_000_000), Cond("created_at", "lt", 1_686_182_400_000_000))
    )
