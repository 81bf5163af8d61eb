"""What the connected Milvus engine can do: the only place Milvus Lite and a Milvus server differ."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What the connected engine can do; the only place Lite and server differ.

    Known from the URI before connecting (Lite or server), refined from the server's version at
    connect time. Unknown version strings (e.g. a managed service) count as a current server.
    """

    lite: bool
    version: tuple[int, int, int] | None = None
    index_type: str = "AUTOINDEX"  # FLAT on Lite: its HNSW with a scope filter loses results (docs/ARCHITECTURE.md)
    consistency: str = "Strong"  # the collection's default (reads by id); a server's own default, Bounded, lags ~0.3 s
    # Searches wait only for the latest write's timestamp, recorded in the history store (read-your-writes
    # across processes), not for the server's clock as Strong does: a server, not Lite (one process).
    write_timestamps: bool = False
    flush_after_writes: bool = False  # Lite converts unflushed rows on every search; a server seals by itself
    inverted_index: bool = True  # INVERTED scalar indexes: Milvus 2.4+, Lite
    filter_params: bool = True  # filter templates: Milvus 2.5+; Lite 3.2.2 rejects them
    bm25: bool = True  # built-in BM25 full-text functions: Milvus 2.5+, Lite
    partition_key: bool = True  # user_id as partition key: Milvus 2.4+ (2.3 upserts ignore it: milvus#30607)

    @classmethod
    def detect(cls, uri: str, server_version: str | None = None) -> Capabilities:
        if _is_lite(uri):
            return cls(
                lite=True,
                version=_parse_version(server_version),
                index_type="FLAT",
                flush_after_writes=True,
                filter_params=False,
                partition_key=False,
            )
        version = _parse_version(server_version)
        at_least = (lambda major, minor: version >= (major, minor, 0)) if version else (lambda major, minor: True)
        return cls(
            lite=False,
            version=version,
            write_timestamps=True,
            inverted_index=at_least(2, 4),
            filter_params=at_least(2, 5),
            bm25=at_least(2, 5),
            partition_key=at_least(2, 4),
        )

    def describe(self) -> dict[str, object]:
        engine = "Milvus Lite" if self.lite else "Milvus server"
        version = ".".join(map(str, self.version)) if self.version else "unknown"
        out: dict[str, object] = {"engine": engine, "version": version}
        out.update({k: v for k, v in self.__dict__.items() if k not in ("lite", "version")})
        return out


def _is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _parse_version(text: str | None) -> tuple[int, int, int] | None:
    """'v2.3.5-lite' -> (2, 3, 5); 'milvus_lite-3.2.2' -> (3, 2, 2); None when there is no number."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None
