"""The token file: one grant per token, checked strictly, never echoed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from milvus_memory_mcp.auth import StaticTokenVerifier, caller_for, load_tokens
from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.settings import Settings

pytestmark = pytest.mark.anyio
GOOD = "a-long-enough-token-0001"


def write(tmp_path: Path, tokens: Any) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(tokens))
    return path


async def test_a_token_maps_to_its_bound_scope_and_permission(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            GOOD: {"user_id": "alice", "agent_id": None, "access": "read-only"},
            "an-unrestricted-admin-token": {"access": "read-write"},
        },
    )
    verifier = StaticTokenVerifier(load_tokens(path))
    token = await verifier.verify_token(GOOD)
    assert token is not None
    caller = caller_for(token, default_user_id="dflt")
    assert caller.bound == Scope(user_id="alice") and caller.read_only and caller.actor == "token:user_id=alice"
    admin = await verifier.verify_token("an-unrestricted-admin-token")
    assert admin is not None and caller_for(admin, None).bound is None
    assert not caller_for(admin, None).read_only
    for wrong in ("", GOOD[:-1], GOOD + "x", GOOD.upper()):
        assert await verifier.verify_token(wrong) is None


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({GOOD: {"user": "alice", "access": "read-write"}}, "user: Extra inputs are not permitted"),
        ({GOOD: {"user_id": "alice", "access": "admin"}}, "access"),
        ({GOOD: {"user_id": "alice"}}, "access: Field required"),
        ({GOOD: {"user_id": "", "access": "read-only"}}, "user_id is empty"),
        ({"short": {"user_id": "alice", "access": "read-only"}}, "at least 16 characters"),
        ([GOOD], "non-empty JSON object"),
        ({}, "non-empty JSON object"),
    ],
)
def test_bad_token_files_are_refused_by_entry_number(tmp_path: Path, tokens: Any, expected: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        load_tokens(write(tmp_path, tokens))
    assert expected in str(e.value)
    assert GOOD not in str(e.value) and "short" not in str(e.value).replace("shorter", "")


def test_missing_token_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read the token file"):
        load_tokens(tmp_path / "nope.json")


def test_allowed_hosts_and_origins_are_comma_separated_lists() -> None:
    s = Settings.load({"MEMORY_ALLOWED_HOSTS": "mem.example.com:8000, 10.0.0.5:*", "MEMORY_ALLOW_UNAUTHENTICATED": "1"})
    assert s.allowed_hosts == ["mem.example.com:8000", "10.0.0.5:*"] and s.allowed_origins == []
    assert s.allow_unauthenticated is True
