"""MEMORY_HISTORY_URL read as asyncpg reads it: checked once at start, shown only without its secrets.

asyncpg takes `postgresql://user:password@host:port,host:port/dbname?name=value&...` as it is: urllib
ends the authority at the first `/`, `?` or `#`; the user name and password come before the `@`, then
a comma-separated list of hosts (an IPv6 address in brackets, `[::1]:5432`); query parameters
(`password`, `sslpassword`, `sslmode`, ...) override or add to them. A password holding one of
`/ # ? @` must therefore be percent-encoded, else part of it is read as a host, a port, the path or
the query.

- `problem`: what is wrong with a URL, in words that quote none of it (it may hold a password);
- `redacted`: the URL every message and log line shows, every secret it can carry masked;
- `scrubbed`: a driver's error text with those secrets taken out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

SCHEMES = ("postgresql", "postgres")
MASK = "***"
EXAMPLE = "must be a PostgreSQL URL such as postgresql://user:password@host:5432/dbname"
ENCODE = "a password holding / # ? @ must be percent-encoded (%2F %23 %3F %40)"
# query parameters whose value is a secret: libpq's and asyncpg's password and sslpassword, in any
# case and however percent-encoded, and anything a server setting names so
_SECRET_NAME = re.compile(r"password|secret|token", re.IGNORECASE)
# RFC 3986, appendix B: matches whatever follows a scheme
_URL = re.compile(
    r"(?P<scheme>[^:/?#]*):(?://(?P<authority>[^/?#]*))?(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?",
    re.DOTALL,
)
_BRACKETED = re.compile(r"\[[^\[\]]+\](?::(?P<port>.*))?")
NOT_VALID = "(a URL that is not valid, not shown)"


@dataclass(frozen=True)
class _Parts:
    scheme: str
    slashes: bool  # an authority follows the scheme ("//"), even an empty one
    userinfo: str | None  # before the authority's last '@'; None without one
    hosts: str  # the host list as written (may be empty: the driver's default)
    path: str
    query: str | None
    fragment: bool


def _split(url: str) -> _Parts | None:
    match = _URL.fullmatch(url)
    if match is None:
        return None
    authority = match["authority"] or ""
    userinfo, at, hosts = authority.rpartition("@")
    return _Parts(
        scheme=match["scheme"].lower(),
        slashes=match["authority"] is not None,
        userinfo=userinfo if at else None,
        hosts=hosts,
        path=match["path"],
        query=match["query"],
        fragment=match["fragment"] is not None,
    )


def _port_ok(port: str) -> bool:
    return port == "" or (port.isascii() and port.isdigit() and 0 < int(port) < 65536)


def _host_problem(spec: str) -> str | None:
    if spec.startswith("[") or spec.count(":") > 1:
        match = _BRACKETED.fullmatch(spec)
        if match is None:
            return "an IPv6 host must be written in brackets, as [::1]:5432"
        port = match["port"] or ""
    else:
        host, _, port = spec.partition(":")
        if not host:
            return "a host of the host list is empty"
    if not _port_ok(port):
        return "a port is not a number from 1 to 65535"
    return None


def problem(url: str) -> str | None:
    """Why asyncpg cannot read `url` as one PostgreSQL database, or None; the reason quotes no part of it."""
    if any(c <= " " or c == "\x7f" for c in url):
        return "not a valid URL: it holds a space or a control character (percent-encode them, %20 for a space)"
    parts = _split(url)
    if parts is None or parts.scheme not in SCHEMES:
        return EXAMPLE
    try:
        urlsplit(url)  # asyncpg's parser: its own errors would quote the URL
    except ValueError:
        return "not a valid URL: unbalanced [ ], or characters NFKC normalisation changes, before the path"
    if parts.userinfo is not None and "@" in parts.userinfo:
        return f"not a valid URL: more than one '@' before the host; {ENCODE}"
    if parts.hosts:
        for spec in parts.hosts.split(","):
            if (why := _host_problem(spec)) is not None:
                return f"not a valid URL: {why}; {ENCODE}"  # a password's / # ? ends the host part
    if "@" in parts.path:
        return f"not a valid URL: an '@' after the host; {ENCODE}"
    if parts.fragment:
        return f"not a valid URL: it has a '#' part; {ENCODE}, and so must a # in a query value (%23)"
    if parts.query:
        try:
            parse_qsl(parts.query, strict_parsing=True)  # as asyncpg parses it
        except ValueError:
            return "not a valid URL: the query is not name=value pairs joined by & (an & in a value: %26)"
    if not (parts.hosts or parts.path.strip("/")):
        return EXAMPLE
    return None


def _secret_pair(pair: str) -> bool:
    name = pair.partition("=")[0]
    return bool(_SECRET_NAME.search(unquote_plus(name)))


def redacted(url: str) -> str:
    """`url` as messages and logs show it: the password (in the userinfo or any secret query parameter)
    masked, each host as written (`[::1]:5432`, `h1:5432,h2:5432`). A URL `problem` refuses is not shown."""
    parts = _split(url)
    if parts is None or problem(url) is not None:
        return NOT_VALID
    authority = parts.hosts
    if parts.userinfo is not None:
        user, colon, _ = parts.userinfo.partition(":")
        authority = f"{user}{':' + MASK if colon else ''}@{authority}"
    shown = f"{url[: len(parts.scheme)]}:{'//' if parts.slashes else ''}{authority}{parts.path}"
    if parts.query is not None:
        pairs = parts.query.split("&")
        shown += "?" + "&".join(f"{p.partition('=')[0]}={MASK}" if _secret_pair(p) else p for p in pairs)
    return shown


def secrets(url: str) -> set[str]:
    """Every secret `url` carries, as written and decoded (empty ones left out)."""
    parts = _split(url)
    if parts is None:
        return set()
    found: set[str] = set()
    if parts.userinfo is not None:
        password = parts.userinfo.partition(":")[2]
        found |= {password, unquote(password)}
    for pair in (parts.query or "").split("&"):
        if _secret_pair(pair):
            value = pair.partition("=")[2]
            found |= {value, unquote_plus(value)}
    return {s for s in found if s}


def scrubbed(text: str, url: str) -> str:
    """`text` (a driver's or the server's error) with every secret of `url` masked."""
    for secret in sorted(secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
