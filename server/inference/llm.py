"""Chat completions from any OpenAI-compatible API (OpenAI, Ollama, vLLM, LM Studio) via `openai`.

Honours OPENAI_API_KEY and OPENAI_BASE_URL unless MEMORY_LLM_API_KEY / MEMORY_LLM_BASE_URL are
set. Retries with exponential backoff (and the server's Retry-After) are the `openai` client's.
Structured output (`response_format` with a JSON schema) is asked for first; an endpoint that
answers 400 to it is asked again without, and remembered.
"""

from __future__ import annotations

import logging
from typing import Any

from milvus_memory_mcp.embedders.openai import describe_openai_error, openai_client
from milvus_memory_mcp.errors import InferenceError

logger = logging.getLogger(__name__)


class OpenAIChat:
    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        self._model = model
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._max_retries = max_retries
        self._client: Any = None
        self._structured: bool | None = None  # None: not known yet

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}"

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = openai_client(self._api_key, self._base_url, self._timeout, self._max_retries)
        return self._client

    async def complete(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> str:
        import openai

        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        fmt = {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        try:
            if self._structured is False:
                response = await self._create(messages, None)
            else:
                try:
                    response = await self._create(messages, fmt)
                    self._structured = True
                except openai.BadRequestError:
                    if self._structured:
                        raise
                    logger.warning("the LLM API refused a JSON-schema response_format; asking without it")
                    response = await self._create(messages, None)
                    self._structured = False
        except openai.OpenAIError as e:
            raise InferenceError(describe_openai_error(e, "LLM")) from e
        except Exception as e:  # a body the client could not read: not JSON, nested too deep, ...
            raise InferenceError(f"The LLM API returned a malformed response: {_describe(e)}") from e
        return _content(response)

    async def _create(self, messages: list[dict[str, str]], fmt: dict[str, Any] | None) -> Any:
        kwargs: dict[str, Any] = {"model": self._model, "messages": messages}
        if fmt is not None:
            kwargs["response_format"] = fmt
        return await self._get_client().chat.completions.create(**kwargs)


def _content(response: Any) -> str:
    """The reply's text. The client builds responses without validating them, so any field may
    hold anything: every shape other than the documented one is an InferenceError."""
    choices = getattr(response, "choices", None)
    if choices is None or (isinstance(choices, list) and not choices):
        raise InferenceError("The LLM returned no answer.")
    if not isinstance(choices, list):
        raise InferenceError(f"The LLM API returned a malformed response: choices is a {type(choices).__name__}.")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None or isinstance(message, (str, int, float, list, dict)):
        raise InferenceError("The LLM API returned a malformed response: choices[0] has no message.")
    refusal = getattr(message, "refusal", None)
    if refusal:
        raise InferenceError(f"The LLM refused: {str(refusal)[:200]}")
    finish_reason = getattr(choice, "finish_reason", None)
    if finish_reason == "length":
        raise InferenceError("The LLM's reply was cut off (finish_reason=length).")
    if finish_reason == "content_filter":
        raise InferenceError("The LLM's reply was withheld by its content filter.")
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise InferenceError(f"The LLM's reply content is a {type(content).__name__}, not text.")
    if not content or not content.strip():
        raise InferenceError("The LLM returned an empty reply.")
    return content


def _describe(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "its JSON is nested too deeply."
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
