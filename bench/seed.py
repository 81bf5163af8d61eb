"""Data dirs holding S memories in one scope, written through the product's own core.

Seeding goes through `MemoryService.add` (SQLite record + history, then Milvus), with an
embedder that answers from the cached corpus vectors, so the stored rows are exactly what the
product would have written. A seeded dir is kept under bench/.cache/ and copied per run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np

from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.embedders.local import LocalEmbedder
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService
from milvus_memory_mcp.settings import Settings

from .corpus import CACHE, corpus

USER = "bench-user"
CATEGORIES = ["hobbies", "food", "travel", "work", "health", "family", "study", "pets"]
SEED_VERSION = 2  # 2: the history database holds the embeddings (search index)


class CachedEmbedder:
    """The real local model, short-circuited for texts whose vectors are already known."""

    model_id = LocalEmbedder.model_id
    dimensions = LocalEmbedder.dimensions

    def __init__(self, texts: list[str], vectors: np.ndarray, model: LocalEmbedder | None = None) -> None:
        self._known = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors
        self._model = model or LocalEmbedder()

    def start(self) -> None:
        self._model.start()

    async def open(self) -> None:
        await self._model.open()

    async def close(self) -> None:
        await self._model.close()

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        if all(t in self._known for t in texts):
            return [self._vectors[self._known[t]].tolist() for t in texts]
        return await self._model.embed(texts, kind)


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, log_level="WARNING")


async def _seed(data_dir: Path, texts: list[str], vectors: np.ndarray) -> None:
    embedder = CachedEmbedder(texts, vectors)
    # Bigger add_memory calls than the default limit of 100 messages: fewer round trips while seeding;
    # no near-duplicate check (one search per message): the generated sentences are all distinct.
    settings = Settings(data_dir=data_dir, log_level="WARNING", max_messages=1000, dedup_threshold=1.0)
    async with MemoryService(settings, embedder=embedder) as service:
        t0 = time.perf_counter()
        step = service.settings.max_messages
        for n, start in enumerate(range(0, len(texts), step)):
            chunk = [{"role": "user", "content": t} for t in texts[start : start + step]]
            await service.add(chunk, Scope(user_id=USER), {"category": CATEGORIES[n % len(CATEGORIES)]})
            if (start // step) % 10 == 9:
                print(f"  seeded {start + step}/{len(texts)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


REAL_AT_LEAST = 10_000  # rows embedded for real; past them, cached real vectors or synthetic ones


def _name(count: int) -> str:
    # Milvus Lite releases do not read each other's files: one seeded dir per release.
    from importlib.metadata import version

    return f"data-v{SEED_VERSION}-lite{version('milvus-lite')}-{count}"


def seeded_vectors(count: int) -> np.ndarray:
    """The vectors stored in the seeded dir of `count` memories, in row order."""
    seeded_dir(count, copy=False)
    return np.load(CACHE / f"{_name(count)}.npy")


def seeded_dir(count: int, copy: bool = True) -> Path:
    """A fresh temporary copy of a data dir holding `count` memories of USER (built once, cached)."""
    cached = CACHE / _name(count)
    if not cached.exists():
        texts, vectors = corpus(count, synthetic_after=REAL_AT_LEAST)
        np.save(CACHE / f"{_name(count)}.npy", vectors)
        print(f"seeding {count} memories through MemoryService into {cached}", file=sys.stderr)
        building = CACHE / f"building-{_name(count)}"
        shutil.rmtree(building, ignore_errors=True)
        anyio.run(_seed, building, texts, vectors)
        building.rename(cached)
    if not copy:
        return cached
    target = Path(tempfile.mkdtemp(prefix=f"bench-{count}-")) / "data"
    shutil.copytree(cached, target)
    return target
