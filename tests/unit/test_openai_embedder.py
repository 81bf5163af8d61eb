"""The openai:<model> embedder against a real HTTP server on 127.0.0.1 (real `openai` client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from milvus_memory_mcp.app import build_server
from milvus_memory_mcp.embedders.openai import OpenAIEmbedder
from milvus_memory_mcp.service import MemoryService

from ..conftest import call, error_of, make_settings
from ..support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=64).running() as f:
        yield f


def embedding_reply(vector: object) -> Reply:
    """One embedding, as a JSON list (the `openai` client decodes what it did not ask as base64 as is)."""
    data = [{"object": "embedding", "index": 0, "embedding": vector}]
    return Reply(200, {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1}})


def embedder(fake: FakeOpenAI, **kw: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "text-embedding-3-small", api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=2.0, **kw
    )  # type: ignore[arg-type]


async def test_openai_embedder_stores_and_searches_with_requested_dimensions(fake: FakeOpenAI, tmp_path: Path) -> None:
    async with MemoryService(make_settings(tmp_path), embedder=embedder(fake, dimensions=64)) as svc:
        async with Client(build_server(svc)) as client:
            await call(client, "add_memory", messages="Plays tennis every weekend", user_id="a")
            await call(client, "add_memory", messages="Allergic to peanuts", user_id="a")
            hits = (await call(client, "search_memories", query="tennis weekend", user_id="a"))["results"]
            assert hits[0]["memory"] == "Plays tennis every weekend"
    bodies = fake.calls("/v1/embeddings")
    assert bodies and all(b["model"] == "text-embedding-3-small" and b["dimensions"] == 64 for b in bodies)
    assert fake.requests[0][2].get("authorization") == "Bearer sk-test"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(401, {"error": {"message": "bad key", "type": "invalid_request_error"}}), "OPENAI_API_KEY"),
        (Reply(429, {"error": {"message": "slow down", "type": "rate_limit"}}), "rate limiting"),
        (Reply(500, {"error": {"message": "boom", "type": "server_error"}}), "HTTP 500"),
        (Reply(200, {"object": "list", "data": [], "model": "m"}), "malformed response"),
        (Reply(200, {"object": "list", "data": {"x": 1}, "model": "m"}), "malformed response"),
        (embedding_reply(None), "malformed response"),
        (embedding_reply([float("nan")] * 64), "not a finite number"),
        (embedding_reply([float("inf")] + [0.5] * 63), "not a finite number"),
        (embedding_reply([0.0] * 64), "all zeros"),
        (embedding_reply(["0.5"] * 64), "not a list of numbers"),
    ],
    ids=["401", "429", "500", "no-data", "data-not-a-list", "null", "nan", "infinite", "zeros", "strings"],
)
async def test_embedding_api_errors_become_clear_tool_errors_and_write_nothing(
    fake: FakeOpenAI, tmp_path: Path, reply: Reply, expected: str
) -> None:
    async with MemoryService(make_settings(tmp_path), embedder=embedder(fake, dimensions=64)) as svc:
        async with Client(build_server(svc)) as client:
            await call(client, "add_memory", messages="first", user_id="a")
            fake.script("/v1/embeddings", reply)
            message = await error_of(client, "add_memory", messages="second", user_id="a")
            assert expected in message, message
            listed = (await call(client, "list_memories", user_id="a"))["results"]
            assert [m["memory"] for m in listed] == ["first"]
            hits = (await call(client, "search_memories", query="first", user_id="a"))["results"]
            assert [h["memory"] for h in hits] == ["first"]


async def test_large_finite_values_are_normalised_without_overflow(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script("/v1/embeddings", embedding_reply([1e308] * 64))
    [vector] = await embedder(fake, dimensions=64).embed(["big"])
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-9


async def test_embedding_timeout_is_reported(fake: FakeOpenAI, tmp_path: Path) -> None:
    async with MemoryService(make_settings(tmp_path), embedder=embedder(fake, dimensions=64)) as svc:
        async with Client(build_server(svc)) as client:
            await call(client, "add_memory", messages="first", user_id="a")
            fake.script("/v1/embeddings", Reply(200, {}, delay=3.0))
            assert "timed out" in await error_of(client, "add_memory", messages="second", user_id="a")


async def test_rate_limit_is_retried_by_the_client_before_failing(fake: FakeOpenAI, tmp_path: Path) -> None:
    e = OpenAIEmbedder("text-embedding-3-small", api_key="k", base_url=fake.base_url, max_retries=2, dimensions=64)
    fake.script("/v1/embeddings", Reply(429, {"error": {"message": "slow"}}, headers={"retry-after-ms": "10"}))
    [v] = await e.embed(["hello"])
    assert len(v) == 64
    assert len(fake.calls("/v1/embeddings")) == 2


async def test_unknown_model_dimension_is_probed_from_the_api(fake: FakeOpenAI) -> None:
    e = OpenAIEmbedder("nomic-embed-text", api_key="k", base_url=fake.base_url)
    await e.open()
    assert e.dimensions == 64
    assert e.model_id == "openai:nomic-embed-text"
