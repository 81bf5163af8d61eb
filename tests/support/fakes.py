"""Small real stand-ins for unit tests of the core: no model to load, no Milvus to open."""

from __future__ import annotations

import hashlib
import math
import re

from milvus_memory_mcp.embedders import Kind

DIMENSIONS = 64


class HashEmbedder:
    """A deterministic bag-of-words embedder: each lower-cased word hashed into one of 64
    dimensions, L2-normalised. Texts that share words are similar; it loads nothing."""

    model_id = "test:hash-bag-of-words"
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self.calls = 0

    def start(self) -> None:
        pass

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        self.calls += 1
        return [self._vector(t) for t in texts]

    @staticmethod
    def _vector(text: str) -> list[float]:
        v = [0.0] * DIMENSIONS
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]
