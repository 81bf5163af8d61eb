"""MEMORY_HISTORY_URL as asyncpg reads it: refused with a reason that quotes none of it, and shown
everywhere (errors, logs, doctor) with every secret it can carry masked (history/postgres/url.py)."""

from __future__ import annotations

import pytest

from milvus_memory_mcp.history.postgres.url import NOT_VALID, problem, redacted, scrubbed

SECRET = "S3cr3t-Zq9"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://memory:{SECRET}@db:5432/memory", "postgresql://memory:***@db:5432/memory"),
        (f"postgresql://memory@db/memory?password={SECRET}", "postgresql://memory@db/memory?password=***"),
        (f"postgresql://memory@db/memory?PASSWORD={SECRET}", "postgresql://memory@db/memory?PASSWORD=***"),
        (f"postgresql://memory@db/memory?Password={SECRET}", "postgresql://memory@db/memory?Password=***"),
        (f"postgresql://memory@db/memory?pass%77ord={SECRET}", "postgresql://memory@db/memory?pass%77ord=***"),
        (
            f"postgresql://memory@db/memory?sslmode=verify-full&sslkey=/k.pem&sslpassword={SECRET}",
            "postgresql://memory@db/memory?sslmode=verify-full&sslkey=/k.pem&sslpassword=***",
        ),
        (
            f"postgres://memory:{SECRET}@db/memory?password={SECRET}x&application_name=mm",
            "postgres://memory:***@db/memory?password=***&application_name=mm",
        ),
        ("postgresql://memory:%2F%23%3F%40S3cr3t@db/memory", "postgresql://memory:***@db/memory"),
        (
            f"postgresql://memory:{SECRET}@/memory?host=/run/postgresql",
            "postgresql://memory:***@/memory?host=/run/postgresql",
        ),
    ],
)
def test_every_secret_a_url_carries_is_masked(url: str, shown: str) -> None:
    assert problem(url) is None
    assert redacted(url) == shown
    assert SECRET not in redacted(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://memory:{SECRET}@[::1]:5432/memory", "postgresql://memory:***@[::1]:5432/memory"),
        ("postgresql://memory@[fe80::1%25eth0]/memory", "postgresql://memory@[fe80::1%25eth0]/memory"),
        (
            f"postgresql://memory:{SECRET}@db1:5432,db2:5433,[::1]/memory",
            "postgresql://memory:***@db1:5432,db2:5433,[::1]/memory",
        ),
    ],
)
def test_hosts_are_shown_as_written_an_ipv6_one_in_brackets_and_every_host_of_a_list(url: str, shown: str) -> None:
    assert problem(url) is None
    assert redacted(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://memory@db.example.com:6432/memory?sslmode=require&target_session_attrs=read-write",
        "postgresql:///memory",
        "postgresql:memory",
    ],
)
def test_a_url_without_secrets_is_shown_unchanged(url: str) -> None:
    assert problem(url) is None
    assert redacted(url) == url


@pytest.mark.parametrize(
    ("url", "secret_parts", "reason"),
    [
        ("postgresql://memory:Xk9vLp2Q/Zw8@db:5432/memory", ["Xk9vLp2Q", "Zw8"], "a port is not a number"),
        ("postgresql://memory:Rt5mNq1#a@db:5432/memory", ["Rt5mNq1", "#a"], "a port is not a number"),
        ("postgresql://memory:Hy3kPl0?z@db:5432/memory", ["Hy3kPl0", "?z"], "a port is not a number"),
        ("postgresql://memory:1234/Zw8x@db:5432/memory", ["Zw8x"], "an '@' after the host"),
        ("postgresql://memory:Pq7@Lm2@db:5432/memory", ["Pq7", "Lm2"], "more than one '@'"),
        ("postgresql://memory@db/memory?password=Ab1#Cd2", ["Ab1", "Cd2"], "'#' part"),
        ("postgresql://memory@db/memory?password=Ab1&Cd2", ["Ab1", "Cd2"], "name=value pairs"),
        ("postgresql://memory:Wq3 Er4@db/memory", ["Wq3", "Er4"], "space or a control character"),
        ("postgresql://memory:Wq3Er4@::1/memory", ["Wq3Er4"], "an IPv6 host must be written in brackets"),
        ("postgresql://memory:Wq3Er4@[::1/memory", ["Wq3Er4"], "before the path"),
        ("postgresql://memory:Wq3Er4@db1,,db2/memory", ["Wq3Er4"], "a host of the host list is empty"),
        ("postgresql://memory:Wq3Er4@db:99999/memory", ["Wq3Er4"], "a port is not a number from 1 to 65535"),
        ("mysql://memory:Wq3Er4@db/memory", ["Wq3Er4"], "must be a PostgreSQL URL"),
        ("postgresql://", [], "must be a PostgreSQL URL"),
    ],
)
def test_a_url_asyncpg_cannot_read_is_refused_without_quoting_any_part_of_it(
    url: str, secret_parts: list[str], reason: str
) -> None:
    why = problem(url)
    assert why is not None and reason in why
    for part in secret_parts:
        assert part not in why
    assert redacted(url) == NOT_VALID  # nothing of it is shown either
    if "'@'" in reason or "host" in reason or "port" in reason:
        assert "must be percent-encoded (%2F %23 %3F %40)" in why


def test_a_drivers_error_text_is_scrubbed_of_the_password_as_written_and_decoded() -> None:
    url = f"postgresql://memory:p%40ss{SECRET}@db/memory?sslpassword=k%2Bey{SECRET}"
    text = f"could not use 'p@ss{SECRET}' nor 'p%40ss{SECRET}', key 'k+ey{SECRET}'"
    assert SECRET not in scrubbed(text, url)
    assert scrubbed("connection refused", url) == "connection refused"
