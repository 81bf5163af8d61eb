"""`milvus-memory-mcp demo`: the reference walk-through (docs/ARCHITECTURE.md) through a real MCP client.

It starts the server as a stdio subprocess on a temporary data dir (or the one given), so the
user's own memories are never touched, and prints every call and its structured result.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters


def _print(step: str, call: str, result: Any) -> None:
    print(f"\n== {step}\n>>> {call}")
    print(json.dumps(result, indent=2, ensure_ascii=False))


async def _call(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"{name} failed: {text}")
    return dict(result.structured_content or {})


def server_params(env_overrides: dict[str, str]) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(env_overrides)
    return StdioServerParameters(command=sys.executable, args=["-m", "milvus_memory_mcp", "serve"], env=env)


async def run_demo(overrides: dict[str, Any]) -> int:
    with tempfile.TemporaryDirectory(prefix="memory-demo-") as tmp:
        env = {f"MEMORY_{k.upper()}": str(v) for k, v in overrides.items()}
        env.setdefault("MEMORY_DATA_DIR", tmp)
        env.setdefault("MEMORY_LOG_LEVEL", "WARNING")
        started = time.perf_counter()
        async with Client(server_params(env), read_timeout_seconds=120) as client:
            tools = await client.list_tools()
            print(
                f"Connected in {time.perf_counter() - started:.2f} s; tools: {', '.join(t.name for t in tools.tools)}"
            )
            print(f"Data dir: {env['MEMORY_DATA_DIR']}")

            args: dict[str, Any] = {
                "messages": "I am working on improving my tennis skills.",
                "user_id": "alice",
                "metadata": {"category": "hobbies"},
            }
            added = await _call(client, "add_memory", args)
            _print("1. Remember a hobby", f"add_memory({args})", added)
            tennis_id = added["results"][0]["id"]

            args = {"memory_id": tennis_id, "data": "Likes to play tennis on weekends"}
            _print("2. Correct it", f"update_memory({args})", await _call(client, "update_memory", args))

            args = {"user_id": "alice"}
            _print("3. List Alice's memories", f"list_memories({args})", await _call(client, "list_memories", args))

            args = {"memory_id": tennis_id}
            _print("4. Its history", f"memory_history({args})", await _call(client, "memory_history", args))

            args = {
                "messages": "I have a linear algebra midterm exam on November 20",
                "user_id": "alice",
                "metadata": {"category": "task"},
            }
            _print("5a. Remember a task", f"add_memory({args})", await _call(client, "add_memory", args))
            args = {"query": "What are Alice's hobbies", "user_id": "alice"}
            _print("5b. Search by meaning", f"search_memories({args})", await _call(client, "search_memories", args))

            args = {"memory_id": tennis_id}
            _print("6a. Forget the hobby", f"delete_memory({args})", await _call(client, "delete_memory", args))
            args = {"user_id": "alice"}
            _print("6b. What is left", f"list_memories({args})", await _call(client, "list_memories", args))
            args = {"memory_id": tennis_id}
            _print(
                "6c. History shows the DELETE", f"memory_history({args})", await _call(client, "memory_history", args)
            )
    print("\nDemo finished: every step ran through a real MCP stdio session.")
    return 0
