"""Embedders turn texts into vectors.

Contract of an `Embedder`:
- `model_id` names the model (recorded with the collection; another model is refused) and
  `dimensions` is the vector length; both are known without I/O.
- `await embed(texts, kind)` returns one L2-normalised vector per text, in order. `kind` is
  "document" for stored memories and "query" for searches (models that ignore it may).
- `start()` begins loading what is heavy without waiting (no-op where nothing is); `await open()`
  waits until it is loaded (idempotent); `embed` calls it if needed; `await close()` frees it.
- Failures raise `EmbedderError` with a message fit for the agent.

A write embeds its texts before it takes the write lock, and `reembed` may switch the embedder in
between: `embed_signed` returns the vectors with the `Signature` of the embedder that made them, and
the write protocol embeds them again under the lock when it is no longer the one in use
(`WriteProtocol.current`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from milvus_memory_mcp.errors import ConfigurationError

if TYPE_CHECKING:
    from milvus_memory_mcp.settings import Settings

Kind = Literal["document", "query"]


class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def start(self) -> None: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]: ...


Signature = tuple[str, int]  # which embedder made a vector: its model id and dimensions


def signature(embedder: Embedder) -> Signature:
    return (embedder.model_id, embedder.dimensions)


@dataclass(frozen=True)
class Signed:
    """Vectors, and the signature of the embedder that made them."""

    made_by: Signature
    vectors: list[list[float]]


async def embed_signed(embedder: Embedder, texts: list[str], kind: Kind = "document") -> Signed:
    """`embed`, with the signature of the embedder that made the vectors (read in the same step as
    the call starts, so a switch cannot come in between)."""
    await embedder.open()  # the dimensions of an API model may be known only once it is open
    made_by = signature(embedder)
    return Signed(made_by, await embedder.embed(texts, kind))


def make_embedder(settings: Settings) -> Embedder:
    """Pick the adapter from the `provider[:model]` string; no I/O."""
    spec = settings.embedder
    if spec == "local":
        from milvus_memory_mcp.embedders.local import LocalEmbedder

        return LocalEmbedder()
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        from milvus_memory_mcp.embedders.openai import OpenAIEmbedder

        return OpenAIEmbedder(spec.split(":", 1)[1], dimensions=settings.embedding_dims)
    raise ConfigurationError(
        f"Unknown embedder {spec!r}: use 'local' or 'openai:<model>' (e.g. openai:text-embedding-3-small)."
    )
