"""Settings: `MEMORY_*` environment variables, mirrored one to one by command-line flags.

Every field below is a setting: `data_dir` is `MEMORY_DATA_DIR` and `--data-dir`. An unknown
`MEMORY_*` variable is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from milvus_memory_mcp.errors import ConfigurationError

ENV_PREFIX = "MEMORY_"
_COLLECTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")  # fullmatch: "$" would let a final "\n" by


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("milvus-memory-mcp", appauthor=False))


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory for the Milvus Lite file and the history database "
        "(default: the platform's user data dir, never the working directory).",
    )
    milvus_uri: str | None = Field(
        None,
        description="Milvus URI: a Milvus Lite file path (default <data dir>/milvus.db), "
        "or http(s)://host:19530 for a Milvus server / Zilliz Cloud.",
    )
    milvus_token: str | None = Field(default=None, description="Milvus token ('user:password' or an API key).")
    milvus_db_name: str | None = Field(
        default=None, description="Milvus database on a server (default: the server's 'default'; not for Lite)."
    )
    milvus_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds allowed for one Milvus call, retries of transient errors included."
    )
    milvus_num_partitions: int = Field(
        16,
        ge=0,
        le=1024,
        description="Partitions of the user_id partition key, on servers that have one (Milvus 2.4+); "
        "0 = no partition key (scope fields filtered through a scalar index). Fixed when the collection is made.",
    )
    collection: str = Field("memories", description="Milvus collection name.")
    history_path: Path | None = Field(default=None, description="SQLite history file (default <data dir>/history.db).")
    history_url: str | None = Field(
        default=None,
        description="PostgreSQL history database, postgresql://user:password@host:port/db (default: the SQLite file).",
    )
    embedder: str = Field(
        "local",
        description="'local' (offline all-MiniLM-L6-v2, 384 dims) or 'openai:<model>' "
        "(uses OPENAI_API_KEY / OPENAI_BASE_URL).",
    )
    llm: str | None = Field(
        default=None,
        description="'openai:<model>' (e.g. openai:gpt-4.1-mini) to distil facts and reconcile them with what "
        "is stored; none (default) stores text as given.",
    )
    llm_base_url: str | None = Field(
        default=None, description="Base URL of the LLM's OpenAI-compatible API (default: OPENAI_BASE_URL)."
    )
    llm_api_key: str | None = Field(default=None, description="API key of the LLM (default: OPENAI_API_KEY).")
    llm_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for one LLM reply.")
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries (with backoff) of an LLM call on 429, 5xx, timeouts."
    )
    query_rewrite: bool = Field(
        False,
        description="With MEMORY_LLM: search_memories also searches up to 3 short facts the LLM words from the "
        "query, as memories are worded (one LLM call per new query; off by default).",
    )
    query_rewrite_timeout: float = Field(
        3.0, gt=0, le=60, description="Seconds a query rewrite may take; past them the search uses the query alone."
    )
    dedup_threshold: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Without an LLM: an add whose closest memory in scope has a cosine similarity above this "
        "returns that memory (event NONE) instead of storing a near-duplicate; 1 turns it off.",
    )
    embedding_dims: int | None = Field(None, ge=1, le=32768, description="Override the embedding dimension.")
    user_id: str | None = Field(default=None, description="Default user_id for calls that name no scope.")
    transport: Literal["stdio", "sse", "streamable-http"] = Field("stdio", description="MCP transport.")
    host: str = Field("127.0.0.1", description="Bind address for HTTP transports.")
    port: int = Field(8000, ge=0, le=65535, description="Port for HTTP transports (0: any free port).")
    search_mode: Literal["hybrid", "dense", "keyword"] = Field(
        "hybrid",
        description="search_memories ranking: 'hybrid' fuses embedding similarity with BM25 keyword relevance; "
        "'dense' or 'keyword' use one alone. Without BM25 in the engine, BM25 scores the dense candidates.",
    )
    search_index: bool = Field(
        True,
        description="Milvus Lite only: answer searches from an in-memory index (dense + BM25) kept in step with "
        "Milvus; false sends every search to Milvus Lite (slower: it scans rows in Python).",
    )
    keyword_weight: float = Field(
        0.7, ge=0, le=1, description="Share of BM25 keyword relevance in the hybrid score (the rest is similarity)."
    )
    recency_weight: float = Field(
        0.0, ge=0, le=1, description="Share of recency in the search score (0 = off): newer memories rank higher."
    )
    recency_half_life_days: float = Field(
        30.0, gt=0, le=36500, description="Age (days since the last update) at which the recency bonus halves."
    )
    auth_tokens: Path | None = Field(
        default=None,
        description='JSON file of bearer tokens for HTTP transports: {"<token>": {"user_id": "alice", '
        '"agent_id": null, "access": "read-write" | "read-only"}, ...}.',
    )
    allow_unauthenticated: bool = Field(
        False, description="Serve HTTP without tokens on a non-loopback address (refused otherwise)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted over HTTP, comma-separated (e.g. 'mem.example.com:8000'); "
        "DNS-rebinding protection stays on.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra Origin header values accepted over HTTP, comma-separated (e.g. 'https://app.example.com').",
    )
    call_timeout: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Seconds a tool call forwarded to the process that owns the data dir may take.",
    )
    session_idle_timeout: float = Field(
        600,
        gt=0,
        le=86400,
        description="Seconds a streamable HTTP session may go without a request in flight before it is closed.",
    )
    stateless_http: bool = Field(
        False,
        description="Streamable HTTP without sessions: each request stands alone, so replicas behind a load "
        "balancer need no sticky routing (no stream for messages outside a call).",
    )
    max_sessions_per_credential: int = Field(
        32,
        ge=1,
        le=10000,
        description="Open streamable HTTP sessions per token (per client address without tokens); one more "
        "closes that credential's least recently used idle session.",
    )
    max_memory_bytes: int = Field(8192, ge=16, le=65535, description="Largest memory text, in UTF-8 bytes.")
    max_messages: int = Field(100, ge=1, le=10000, description="Most messages accepted by one add_memory.")
    flush_delay: float = Field(0.5, ge=0, le=60, description="Seconds to wait before flushing a burst (Lite).")
    pending_sweep: float = Field(
        10.0,
        ge=0.05,
        le=3600,
        description="Seconds between replays of writes a dead replica left pending (PostgreSQL history).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, v: str) -> str:
        if not _COLLECTION_RE.fullmatch(v):
            raise ValueError("must start with a letter or '_' and hold only letters, digits and '_'")
        return v

    @field_validator("history_url")
    @classmethod
    def _history_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from milvus_memory_mcp.history.postgres.url import problem  # as asyncpg reads it (several hosts too)

        if (why := problem(v)) is not None:  # says what is wrong, quoting nothing: the URL may hold a password
            raise ValueError(why)
        return v

    @field_validator("milvus_db_name")
    @classmethod
    def _db_name(cls, v: str | None) -> str | None:
        if v is not None and not _COLLECTION_RE.fullmatch(v):
            raise ValueError("must start with a letter or '_' and hold only letters, digits and '_'")
        return v

    @model_validator(mode="after")
    def _db_name_needs_server(self) -> Settings:
        if self.milvus_db_name and self.milvus_is_lite:
            raise ValueError("MEMORY_MILVUS_DB_NAME applies to a Milvus server only, not to a Milvus Lite file")
        return self

    @model_validator(mode="after")
    def _rewrite_needs_llm(self) -> Settings:
        if self.query_rewrite and not self.llm:
            raise ValueError("MEMORY_QUERY_REWRITE needs an LLM: set MEMORY_LLM (e.g. openai:gpt-4.1-mini)")
        return self

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [item.strip() for item in v.split(",") if item.strip()]
        return v

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def resolved_history_path(self) -> Path:
        return self.history_path or self.data_dir / "history.db"

    @property
    def milvus_is_lite(self) -> bool:
        return not self.resolved_milvus_uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `MEMORY_*` variables, then explicit overrides (CLI flags) on top."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and value != ""
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                if not err["loc"]:  # a rule across settings names them in its message
                    problems.append(err["msg"].removeprefix("Value error, "))
                    continue
                name = str(err["loc"][0])
                label = f"{ENV_PREFIX}{name.upper()} / --{name.replace('_', '-')}"
                if err["type"] == "extra_forbidden":
                    problems.append(f"unknown setting {ENV_PREFIX}{name.upper()}")
                else:
                    problems.append(f"{label}: {err['msg']}")
            raise ConfigurationError("Invalid settings: " + "; ".join(problems)) from None
