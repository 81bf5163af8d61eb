"""Memory inference: an LLM distils facts from messages and reconciles them with stored memories.

Contract of a `ChatModel`:
- `model_id` names the model (for logs); known without I/O.
- `await complete(system, user, schema_name, schema)` returns the text of one reply, asking for
  JSON that follows `schema` where the endpoint supports structured output. It retries rate
  limits, timeouts and 5xx with backoff, and raises `InferenceError` (a sentence fit for the
  agent) on failure, refusal, a cut-off or an empty reply.

`prompts.py` holds the two prompts and their JSON schemas, `reconcile.py` the extraction and
decision steps and the mapping of the model's decisions onto real memory ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from milvus_memory_mcp.errors import ConfigurationError

if TYPE_CHECKING:
    from milvus_memory_mcp.settings import Settings


class ChatModel(Protocol):
    @property
    def model_id(self) -> str: ...

    async def complete(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> str: ...


def make_llm(settings: Settings) -> ChatModel | None:
    """The configured LLM adapter, or None when MEMORY_LLM is not set; no I/O."""
    spec = settings.llm
    if not spec:
        return None
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        from milvus_memory_mcp.inference.llm import OpenAIChat

        return OpenAIChat(
            spec.split(":", 1)[1],
            api_key=settings.llm_api_key,
            base_url=settings.llm_base_url,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )
    raise ConfigurationError(f"Unknown LLM {spec!r}: use 'openai:<model>' (e.g. openai:gpt-4.1-mini).")
