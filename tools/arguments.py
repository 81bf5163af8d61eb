"""Tool arguments: schemas that say what is checked, and the product's own one-line messages.

The MCP SDK validates a call's arguments with a pydantic model built from the tool's signature
(`FuncMetadata.validate_arguments`) and reports a failure as `ValidationError` text, several lines
with a pydantic URL. `strict_arguments` swaps each tool's model for one that forbids unknown
arguments (`additionalProperties: false` in the schema) and its validation for one that raises a
`ValidationError` whose text is one line: the argument, what was given, what is expected, an
example. The SDK turns that into the tool error the agent reads.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from pydantic import ConfigDict, ValidationError

# argument -> (what it must be, an example); bounds come from the schema.
EXPECTED: dict[str, tuple[str, str]] = {
    "messages": (
        'a string, or a list of {"role": "user"|"assistant", "content": "..."} objects',
        '"Prefers window seats"',
    ),
    "query": ("a string", '"dietary restrictions"'),
    "data": ("a string", '"Likes to play tennis on weekends"'),
    "memory_id": ("a memory id (a UUID string)", '"5f3dd46a-3d39-489d-9137-ab79be234add"'),
    "user_id": ("a string", '"alice"'),
    "agent_id": ("a string", '"travel-planner"'),
    "run_id": ("a string", '"session-42"'),
    "metadata": ("a JSON object", '{"category": "hobbies"}'),
    "filters": ("a JSON object", '{"category": "hobbies"}'),
    "limit": ("an integer", "5"),
    "max_tokens": ("an integer", "500"),
    "threshold": ("a number", "0.3"),
    "infer": ("a JSON boolean", "false"),
    "verbose": ("a JSON boolean", "true"),
    "confirm": ("the JSON boolean true", "true"),
    "cursor": ("the next_cursor string of the previous page", '"eyJ0Ijo..."'),
}


class ArgumentError(pydantic_core.ValidationError):
    """A ValidationError whose text is the product's message (the SDK shows `str(exc)`)."""

    message = ""

    def __str__(self) -> str:
        return self.message


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(tool: str, schema: dict[str, Any], arguments: dict[str, Any], exc: ValidationError) -> str:
    """One line for the first problem: unknown arguments first, then missing, then wrong values."""
    props: dict[str, Any] = schema.get("properties", {})
    errors = exc.errors()
    unknown = sorted({str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]})
    if unknown:
        names = ", ".join(unknown)
        return f"{tool} has no argument {names}; its arguments are: {', '.join(props)}."
    for e in errors:
        if e["type"] == "missing" and len(e["loc"]) == 1:
            name = str(e["loc"][0])
            expected, example = EXPECTED.get(name, ("a value", "..."))
            return f"{tool} needs {name}: {expected}, e.g. {name}={example}."
    name = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else "arguments"
    given = arguments.get(name)
    expected, example = EXPECTED.get(name, ("a valid value", "..."))
    bounds = props.get(name, {})
    low, high = _bounds(bounds)
    if low is not None and high is not None:
        expected += f" from {low} to {high}"
    return f"{name} must be {expected}, got {_shown(given)} ({_kind(given)}); e.g. {name}={example}."


def _bounds(prop: dict[str, Any]) -> tuple[Any, Any]:
    for option in [prop, *prop.get("anyOf", [])]:
        if "minimum" in option or "maximum" in option:
            return option.get("minimum"), option.get("maximum")
    return None, None


class CheckedMetadata(FuncMetadata):
    tool_name: str = ""

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        try:
            return super().validate_arguments(arguments_to_validate)
        except ValidationError as exc:
            schema = self.arg_model.model_json_schema(by_alias=True)
            error = ArgumentError.from_exception_data(exc.title, [])
            error.message = describe(self.tool_name, schema, arguments_to_validate, exc)
            raise error from None


def lean_schema(schema: Any, *, described: bool = True) -> Any:
    """A JSON schema without what costs bytes and says nothing: titles, null defaults,
    `additionalProperties: true`, and the `null` branch of an optional field (`anyOf: [X, null]`
    becomes X: the field may be left out, and results leave out what is null, tools/render.py);
    without descriptions and defaults unless `described` (output schemas: the tool's description
    says it).
    Every type stays a single `type` (portable to clients with a one-type dialect)."""
    if isinstance(schema, list):
        return [lean_schema(x, described=described) for x in schema]  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():  # pyright: ignore[reportUnknownVariableType]
        if key == "title" or (key == "default" and value is None) or (key == "additionalProperties" and value is True):
            continue
        if key in ("description", "default") and not described:
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: lean_schema(sub, described=described) for name, sub in value.items()}  # pyright: ignore
        else:
            out[key] = lean_schema(value, described=described)
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:  # pyright: ignore
        rest = [o for o in options if o != {"type": "null"}]  # pyright: ignore
        del out["anyOf"]
        out = {**rest[0], **out} if len(rest) == 1 else {**out, "anyOf": rest}  # pyright: ignore
    return out


def strict_arguments(server: MCPServer) -> None:
    """Forbid unknown arguments and rewrite validation errors, for every tool of `server`."""
    for tool in server._tool_manager.list_tools():  # pyright: ignore[reportPrivateUsage]
        meta = tool.fn_metadata
        base = meta.arg_model
        checked: type[ArgModelBase] = type(base.__name__, (base,), {"model_config": ConfigDict(extra="forbid")})
        tool.fn_metadata = CheckedMetadata(
            arg_model=checked,
            output_schema=lean_schema(meta.output_schema, described=False),
            output_model=meta.output_model,
            wrap_output=meta.wrap_output,
            tool_name=tool.name,
        )
        tool.parameters = lean_schema(checked.model_json_schema(by_alias=True))
