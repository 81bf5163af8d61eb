"""Bearer tokens for the HTTP transports, each bound to a scope and a permission.

The operator lists them in a JSON file (`MEMORY_AUTH_TOKENS` / `--auth-tokens`):

    {"<token>": {"user_id": "alice", "agent_id": null, "access": "read-write"}, ...}

`access` is `read-write` or `read-only`; `user_id` / `agent_id` / `run_id` bind the token's calls
to that scope whatever scope arguments the agent passes (all null: an unrestricted token).
Tokens are kept only as SHA-256 digests, compared in constant time, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel, ConfigDict, ValidationError

from milvus_memory_mcp.errors import ConfigurationError, InvalidInput
from milvus_memory_mcp.records import Caller, Scope
from milvus_memory_mcp.validation import check_scope

MIN_TOKEN_LENGTH = 16
READ_WRITE = "read-write"
READ_ONLY = "read-only"

logger = logging.getLogger(__name__)


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    access: Literal["read-write", "read-only"]


@dataclass(frozen=True)
class Grant:
    """What one token may do: its bound scope (None: unrestricted) and whether it may write."""

    digest: bytes
    scope: Scope | None
    read_only: bool

    @property
    def label(self) -> str:
        """A name for logs and history that reveals nothing of the token."""
        who = self.scope.describe().replace("'", "") if self.scope else "unrestricted"
        return f"token:{who}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def load_tokens(path: Path) -> list[Grant]:
    """Read and check the token file; a problem names the entry by position, never by token."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigurationError(f"Cannot read the token file {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"The token file {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigurationError(f"The token file {path} must be a non-empty JSON object of token -> grant.")
    grants: list[Grant] = []
    for position, (token, spec) in enumerate(raw.items(), start=1):
        where = f"token file {path}, entry #{position}"
        if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
            raise ConfigurationError(f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters and no spaces.")
        try:
            entry = TokenEntry.model_validate(spec)
            scope = check_scope(entry.user_id, entry.agent_id, entry.run_id)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors())
            raise ConfigurationError(f"{where}: {problems}") from None
        except InvalidInput as e:
            raise ConfigurationError(f"{where}: {e}") from None
        grants.append(Grant(_digest(token), None if scope.is_empty() else scope, entry.access == READ_ONLY))
    return grants


class StaticTokenVerifier:
    """The SDK's `TokenVerifier` over the operator's token file.

    With `path`, the file is read again when it changes (its mtime, size or inode, checked on each
    request: one stat), so a token removed from it stops working at once. A file that cannot be
    read or checked then refuses every token until it is fixed (logged): a token meant to be
    revoked never keeps working because of a typo.
    """

    def __init__(self, grants: list[Grant], path: Path | None = None) -> None:
        self._grants = grants
        self._path = path
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload_if_changed(self) -> None:
        signature = self._signature()
        if signature == self._seen or self._path is None:
            return
        self._seen = signature
        try:
            self._grants = load_tokens(self._path)
        except ConfigurationError as e:
            self._grants = []
            logger.error("token file changed and is refused, so every token is refused until it is fixed: %s", e)
            return
        logger.info("token file %s reloaded: %d token(s)", self._path, len(self._grants))

    def grant_for(self, token: str) -> Grant | None:
        self._reload_if_changed()
        digest = _digest(token)
        found = None
        for grant in self._grants:  # no early exit: the time taken says nothing about which matched
            if hmac.compare_digest(grant.digest, digest):
                found = grant
        return found

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.grant_for(token)
        if grant is None:
            return None
        scope = dict(grant.scope.items()) if grant.scope else {}
        return AccessToken(
            token=token,
            client_id=grant.label,
            scopes=[READ_ONLY if grant.read_only else READ_WRITE],
            claims={"memory_scope": scope},
        )


def caller_for(token: AccessToken, default_user_id: str | None) -> Caller:
    """The Caller of a request authenticated by `StaticTokenVerifier`."""
    scope = (token.claims or {}).get("memory_scope") or {}
    return Caller(
        bound=Scope(**scope) if scope else None,
        actor=token.client_id,
        read_only=READ_WRITE not in token.scopes,
        default_user_id=default_user_id,
    )
