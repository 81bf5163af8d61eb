"""Dashboard sessions are bounded per token: a token's logins beyond its cap end its own least
recently used session, never another token's; a full process ends one of the token holding the most."""

from __future__ import annotations

from starlette.requests import Request

from milvus_memory_mcp.records import Caller
from milvus_memory_mcp.ui.session import COOKIE, SESSION_TTL, Session, Sessions

TOKENS = ("alice-token-0123456789abcdef", "bob-token-0123456789abcdef00", "carol-token-0123456789abcdef")
ALICE, BOB, CAROL = TOKENS


def verify(token: str) -> Caller | None:
    return Caller(actor=f"{token[:5]} (dashboard)") if token in TOKENS else None


def request_with(session: Session) -> Request:
    return Request({"type": "http", "headers": [(b"cookie", f"{COOKIE}={session.id}".encode())]})


def logged_in(sessions: Sessions, session: Session) -> bool:
    return sessions.current(request_with(session)) is session


def log_in(sessions: Sessions, token: str) -> Session:
    session = sessions.login(token)
    assert session is not None
    return session


def test_a_tokens_logins_beyond_its_cap_end_its_own_least_recently_used_session_only() -> None:
    sessions = Sessions(verify, per_token=3, most=100)
    alice = log_in(sessions, ALICE)
    bobs = [log_in(sessions, BOB) for _ in range(3)]
    assert logged_in(sessions, bobs[0])  # used again: now the most recently used of bob's
    flood = [log_in(sessions, BOB) for _ in range(1000)]
    assert logged_in(sessions, alice)
    assert [logged_in(sessions, s) for s in bobs] == [False, False, False]
    assert [logged_in(sessions, s) for s in flood] == [False] * 997 + [True] * 3
    assert sessions.login("not-a-token-0123456789") is None


def test_a_full_process_ends_the_least_recently_used_session_of_the_token_holding_the_most() -> None:
    sessions = Sessions(verify, per_token=4, most=6)
    alices = [log_in(sessions, ALICE) for _ in range(3)]
    bobs = [log_in(sessions, BOB) for _ in range(2)]
    carol = log_in(sessions, CAROL)  # six: the process is full
    assert logged_in(sessions, alices[0])
    newer_carol = log_in(sessions, CAROL)  # alice holds the most: her least recently used goes
    kept = [logged_in(sessions, s) for s in (*alices, *bobs, carol, newer_carol)]
    assert kept == [True, False, True, True, True, True, True]
    log_in(sessions, CAROL)  # a tie (alice 2, bob 2, carol 2): the token logging in gives one up
    assert [logged_in(sessions, s) for s in (alices[0], alices[2], *bobs, newer_carol)] == [True] * 5
    assert not logged_in(sessions, carol)


def test_expired_sessions_go_before_any_live_one_is_ended() -> None:
    sessions = Sessions(verify, per_token=4, most=2)
    alice, bob = log_in(sessions, ALICE), log_in(sessions, BOB)
    alice.seen -= SESSION_TTL + 1  # idle for longer than a session lives
    log_in(sessions, CAROL)
    assert logged_in(sessions, bob) and not logged_in(sessions, alice)
