"""`add_memory`'s `messages`: a string, or a list of {role, content}, checked into `Message`s."""

from __future__ import annotations

from dataclasses import dataclass

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.validation import check_text

ROLES = ("user", "assistant", "system")


@dataclass(frozen=True)
class Message:
    role: str | None  # None: given as a plain string
    content: str


def parse_messages(messages: object, max_bytes: int, max_messages: int) -> list[Message]:
    if isinstance(messages, str):
        return [Message(None, check_text(messages, max_bytes))]
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a string or a non-empty list of {role, content} objects.")
    if len(messages) > max_messages:
        raise InvalidInput(f"messages holds {len(messages)} items; the limit is {max_messages}.")
    out: list[Message] = []
    for i, m in enumerate(messages):
        role = getattr(m, "role", None) if not isinstance(m, dict) else m.get("role")
        content = getattr(m, "content", None) if not isinstance(m, dict) else m.get("content")
        if role not in ROLES:
            raise InvalidInput(f"messages[{i}].role must be one of {', '.join(ROLES)}.")
        out.append(Message(str(role), check_text(content, max_bytes, f"messages[{i}].content")))
    return out
