"""Dashboard logins: bearer tokens exchanged for a session cookie, CSRF tokens, request checks.

- A login posts a token; the token is checked by the HTTP transports' verifier (server/auth.py),
  or, when none is configured, against the login token this process printed (no token file). The session
  keeps the token in this process's memory only and checks it again on every request, so a token
  removed from the token file stops working in the dashboard at once. The cookie holds a random
  session id: HttpOnly, SameSite=Strict, Path=/ui.
- Every form carries the session's CSRF token (the login form: a random value also set as a
  short-lived cookie, double-submit); a POST whose Origin names another site is refused.
- Sessions expire after SESSION_TTL idle. One token keeps at most MAX_SESSIONS_PER_TOKEN (a login
  beyond that ends that token's least recently used one), so a token's logins never end another
  token's sessions; the process keeps at most MAX_SESSIONS (a login beyond that ends the least
  recently used session of the token holding the most).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from milvus_memory_mcp.auth import StaticTokenVerifier
from milvus_memory_mcp.records import Caller

COOKIE = "mm_session"
LOGIN_COOKIE = "mm_login"
SESSION_TTL = 8 * 3600.0
MAX_SESSIONS = 1000
MAX_SESSIONS_PER_TOKEN = 20
PATH = "/ui"

Verify = Callable[[str], "Caller | None"]


def token_check(verifier: StaticTokenVerifier | None, run_token: str | None, default_user: str | None) -> Verify:
    """Token -> the Caller it grants (None: refused), by the token file or this run's login token."""

    def verify(token: str) -> Caller | None:
        if verifier is not None:
            grant = verifier.grant_for(token)
            if grant is None:
                return None
            actor = f"{grant.label} (dashboard)"
            return Caller(bound=grant.scope, actor=actor, read_only=grant.read_only, default_user_id=default_user)
        if run_token is not None and hmac.compare_digest(token.encode(), run_token.encode()):
            return Caller(actor="dashboard", default_user_id=default_user)
        return None

    return verify


@dataclass
class Session:
    id: str
    token: str
    csrf: str
    seen: float
    caller: Caller


class Sessions:
    def __init__(self, verify: Verify, per_token: int = MAX_SESSIONS_PER_TOKEN, most: int = MAX_SESSIONS) -> None:
        self._verify = verify
        self._per_token = per_token
        self._most = most
        self._by_id: dict[str, Session] = {}
        self._by_token: dict[str, OrderedDict[str, Session]] = {}  # each token's, least recently used first

    def login(self, token: str) -> Session | None:
        token = token.strip()
        caller = self._verify(token)
        if caller is None:
            return None
        self._forget_expired()
        own = self._by_token.get(token)
        if own is not None and len(own) >= self._per_token:
            self._drop(next(iter(own.values())))
        elif len(self._by_id) >= self._most:
            self._drop(self._victim(token))
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), time.monotonic(), caller)
        self._by_id[session.id] = session
        self._by_token.setdefault(token, OrderedDict())[session.id] = session
        return session

    def current(self, request: Request) -> Session | None:
        """The request's session, its token checked again (revoked: logged out)."""
        sid = request.cookies.get(COOKIE)
        session = self._by_id.get(sid) if sid else None
        if session is None:
            return None
        now = time.monotonic()
        caller = self._verify(session.token)
        if caller is None or now - session.seen > SESSION_TTL:
            self._drop(session)
            return None
        session.seen = now
        session.caller = caller
        self._by_token[session.token].move_to_end(session.id)
        return session

    def logout(self, session: Session) -> None:
        self._drop(session)

    def _victim(self, token: str) -> Session:
        """The process is full: the least recently used session of the token holding the most (on a
        tie the token logging in, then the token whose session is the least recently used)."""
        held = self._by_token.items()
        _, sessions = max(held, key=lambda kv: (len(kv[1]), kv[0] == token, -next(iter(kv[1].values())).seen))
        return next(iter(sessions.values()))

    def _forget_expired(self) -> None:
        cutoff = time.monotonic() - SESSION_TTL
        for session in [s for s in self._by_id.values() if s.seen < cutoff]:
            self._drop(session)

    def _drop(self, session: Session) -> None:
        self._by_id.pop(session.id, None)
        own = self._by_token.get(session.token)
        if own is not None:
            own.pop(session.id, None)
            if not own:
                del self._by_token[session.token]

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, path=PATH, httponly=True, samesite="strict", secure=_tls(request))

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict", secure=_tls(request))

    # the login form's CSRF (no session yet): double-submit

    def login_nonce(self, request: Request) -> str:
        return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)

    def set_login_cookie(self, request: Request, response: Response, nonce: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE, nonce, path=PATH, httponly=True, samesite="strict", secure=_tls(request), max_age=3600
        )


def _tls(request: Request) -> bool:
    """Secure cookies when the browser reached us over HTTPS (uvicorn trusts a loopback proxy's X-Forwarded-Proto)."""
    return request.url.scheme == "https"


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def origin_ok(request: Request) -> bool:
    """A browser's POST names its origin: it must be this server (absent: not a browser form post)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def host_allowed(host: str, allowed: list[str]) -> bool:
    """DNS-rebinding protection as for the MCP endpoints: the Host header against 'name:*' / 'name:port'."""
    for pattern in allowed:
        if pattern.endswith(":*"):
            name = pattern[:-2]
            if host == name or (host.startswith(name + ":") and host[len(name) + 1 :].isdigit()):
                return True
        elif host == pattern:
            return True
    return False
