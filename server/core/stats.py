"""`stats` for the owner's CLI: memories per scope, store sizes, embedder, versions, pending writes."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any

from milvus_memory_mcp import __version__
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.settings import Settings


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (0 when missing)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


async def collect(settings: Settings, history: HistoryStore, embedder: Embedder) -> dict[str, Any]:
    counts = await history.counts()
    state = await history.store_state()  # the collection `reembed` switched to, or is building
    reembed = None
    if target := state.get("target"):
        done, live = await history.reembed_progress(target)
        reembed = {"collection": target, "model": state.get("target_model"), "done": done, "total": live}
    pending = await history.pending_ids()
    db = settings.resolved_history_path
    sizes: dict[str, int] = {}
    if not settings.history_url:  # PostgreSQL's database size is its server's business
        sizes["history"] = sum(_size(Path(f"{db}{suffix}")) for suffix in ("", "-wal", "-shm"))
    if settings.milvus_is_lite:
        sizes["milvus_lite"] = _size(Path(settings.resolved_milvus_uri))
    return {
        "data_dir": str(settings.data_dir),
        "collection": state.get("active") or settings.collection,
        "reembed_in_progress": reembed,
        "memories": sum(s["live"] for s in counts["scopes"]),
        "deleted": sum(s["deleted"] for s in counts["scopes"]),
        "scopes": counts["scopes"],
        "events": counts["events"],
        "pending_writes": len(pending),
        "store_bytes": sizes,
        "embedder": {"model": embedder.model_id, "dimensions": embedder.dimensions},
        "versions": {
            "milvus_memory_mcp": __version__,
            "schema": counts["schema"],
            "pymilvus": _version("pymilvus"),
            "milvus_lite": _version("milvus-lite"),
        },
    }
