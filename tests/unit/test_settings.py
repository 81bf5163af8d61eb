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
