"""Settings come from MEMORY_* variables and flags; mistakes are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from milvus_memory_mcp.errors import ConfigurationError
from milvus_memory_mcp.settings import Settings


def test_defaults_live_in_the_user_data_dir_not_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load({})
    assert s.embedder == "local" and s.transport == "stdio" and s.host == "127.0.0.1"
    assert not str(s.resolved_milvus_uri).startswith(str(tmp_path))
    assert s.resolved_milvus_uri.endswith("milvus.db") and s.milvus_is_lite
    assert s.resolved_history_path.name == "history.db"


def test_environment_then_flags_override() -> None:
    s = Settings.load({"MEMORY_DATA_DIR": "/d", "MEMORY_USER_ID": "alice", "MEMORY_PORT": "9000"}, port="9100")
    assert s.data_dir == Path("/d") and s.user_id == "alice" and s.port == 9100
    assert s.resolved_milvus_uri == "/d/milvus.db"
    remote = Settings.load({"MEMORY_MILVUS_URI": "http://db:19530"})
    assert not remote.milvus_is_lite


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MEMORY_COLECTION": "x"}, "unknown setting MEMORY_COLECTION"),
        ({"MEMORY_PORT": "http"}, "MEMORY_PORT"),
        ({"MEMORY_TRANSPORT": "carrier-pigeon"}, "MEMORY_TRANSPORT"),
        ({"MEMORY_COLLECTION": "bad name;drop"}, "MEMORY_COLLECTION"),
        ({"MEMORY_COLLECTION": "memories\n"}, "MEMORY_COLLECTION"),
        ({"MEMORY_MAX_MEMORY_BYTES": "100000"}, "MEMORY_MAX_MEMORY_BYTES"),
    ],
)
def test_bad_settings_are_refused_by_name(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        Settings.load(env)
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("password", "rest"),
    [("Xk9vLp2Q", "/Zw8"), ("Rt5mNq1", "#a4T"), ("Hy3kPl0", "?zB7"), ("Pq7Lm2", "@Vb8")],
)
def test_a_history_url_with_an_unencoded_password_is_refused_without_echoing_it(password: str, rest: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        Settings.load({"MEMORY_HISTORY_URL": f"postgresql://memory:{password}{rest}@db:5432/memory"})
    message = str(e.value)
    assert "MEMORY_HISTORY_URL" in message and "must be percent-encoded" in message
    assert password not in message and rest[1:] not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://memory:Xk9vLp2Q%2FZw8@db:5432/memory",  # the same password, percent-encoded
        "postgresql://memory@db:5432/memory?password=Xk9vLp2Q%2FZw8&sslmode=require",
        "postgresql://memory:pw@db1:5432,db2:5433/memory",  # several hosts, as asyncpg tries them
        "postgresql://memory:pw@[::1]:5432/memory",
        "postgres:///memory?host=/run/postgresql",
    ],
)
def test_a_history_url_asyncpg_reads_is_accepted(url: str) -> None:
    assert Settings.load({"MEMORY_HISTORY_URL": url}).history_url == url
