"""Embeddings from any OpenAI-compatible API (OpenAI, Ollama, vLLM, LM Studio) via `openai`.

Honours OPENAI_API_KEY and OPENAI_BASE_URL. API failures become EmbedderError with the cause.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from milvus_memory_mcp.embedders import Kind
from milvus_memory_mcp.errors import EmbedderError

logger = logging.getLogger(__name__)

KNOWN_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
BATCH = 256


def openai_client(api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> Any:
    """An `openai.AsyncOpenAI` for any OpenAI-compatible API (shared by the embedder and the LLM).

    Falls back to OPENAI_API_KEY / OPENAI_BASE_URL; local servers (Ollama, vLLM) need no key.
    """
    import openai

    return openai.AsyncOpenAI(
        api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
        base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
        timeout=timeout,
        max_retries=max_retries,
    )


def describe_openai_error(e: Exception, what: str) -> str:
    """One clear sentence for an `openai` exception (shared by the embedder and the LLM)."""
    import openai

    if isinstance(e, openai.AuthenticationError):
        return f"The {what} API rejected the credentials (401): check OPENAI_API_KEY."
    if isinstance(e, openai.PermissionDeniedError):
        return f"The {what} API refused access (403): the key may lack access to this model."
    if isinstance(e, openai.NotFoundError):
        return f"The {what} API does not know this model or URL (404): check the model name and OPENAI_BASE_URL."
    if isinstance(e, openai.RateLimitError):
        return f"The {what} API is rate limiting (429) even after retries; try again shortly."
    if isinstance(e, openai.APITimeoutError):
        return f"The {what} API timed out; try again, or check OPENAI_BASE_URL."
    if isinstance(e, openai.APIConnectionError):
        return f"Could not connect to the {what} API: check OPENAI_BASE_URL and the network."
    if isinstance(e, openai.APIStatusError):
        return f"The {what} API failed with HTTP {e.status_code}."
    return f"The {what} API call failed: {type(e).__name__}."


class OpenAIEmbedder:
    def __init__(
        self,
        model: str,
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        self._model = model
        self._requested_dims = dimensions
        self._dims = dimensions or KNOWN_DIMENSIONS.get(model)
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._max_retries = max_retries
        self._client: Any = None

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}"

    @property
    def dimensions(self) -> int:
        if self._dims is None:
            raise EmbedderError(
                f"The dimension of embedding model {self._model!r} is unknown: set MEMORY_EMBEDDING_DIMS."
            )
        return self._dims

    def start(self) -> None:
        pass  # nothing heavy: the client is made at open()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client = openai_client(self._api_key, self._base_url, self._timeout, self._max_retries)
        if self._dims is None:  # a model we do not know: ask the API once
            await self._embed_batch(["dimension probe"])

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        await self.open()
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            out.extend(await self._embed_batch(texts[start : start + BATCH]))
        return out

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        import openai

        kwargs: dict[str, Any] = {"model": self._model, "input": texts}
        if self._requested_dims is not None and self._model.startswith("text-embedding-3"):
            kwargs["dimensions"] = self._requested_dims
        try:
            response = await self._client.embeddings.create(**kwargs)
        except openai.OpenAIError as e:
            raise EmbedderError(describe_openai_error(e, "embedding")) from e
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # how the client's parser rejects a bad body
            raise EmbedderError(f"The embedding API returned a malformed response: {e}") from e
        try:
            data = sorted(response.data or [], key=lambda d: d.index)
            vectors = [_vector(d.embedding) for d in data]
        except (ValueError, TypeError, AttributeError) as e:
            raise EmbedderError(f"The embedding API returned a malformed response: {e}") from e
        if len(data) != len(texts):
            raise EmbedderError(f"The embedding API returned {len(data)} vectors for {len(texts)} texts.")
        if self._dims is None:
            self._dims = len(vectors[0])
        for v in vectors:
            if len(v) != self._dims:
                raise EmbedderError(
                    f"The embedding API returned {len(v)} dimensions for {self._model!r}, expected {self._dims}; "
                    "set MEMORY_EMBEDDING_DIMS to the model's real dimension."
                )
        return [_normalise(v) for v in vectors]


def _vector(embedding: object) -> list[float]:
    """One embedding as floats: ValueError unless it is a list of finite numbers, not all zero (a
    NaN or infinite value would score every query alike, and an all-zero vector matches nothing)."""
    if not isinstance(embedding, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in embedding
    ):
        raise ValueError("an embedding is not a list of numbers")
    vector = [float(x) for x in embedding]
    if not all(math.isfinite(x) for x in vector):
        raise ValueError("an embedding holds a value that is not a finite number (NaN or infinite)")
    if not any(vector):
        raise ValueError("an embedding is all zeros")
    return vector


def _normalise(v: list[float]) -> list[float]:
    """`v` (finite, not all zero) at unit length; scaled by its largest value first, so that no
    sum of squares overflows."""
    scale = max(abs(x) for x in v)
    w = [x / scale for x in v]
    norm = math.hypot(*w)
    return [x / norm for x in w]
