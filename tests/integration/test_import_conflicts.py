"""Import through the core: an id already present is skipped or replaced whole (text, metadata,
history), both stores agree afterwards, and a bad line or option changes nothing."""

from __future__ import annotations

import pytest

from milvus_memory_mcp import doctor
from milvus_memory_mcp.core.transfer import from_json, to_json
from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.records import Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import HISTORIES

pytestmark = [pytest.mark.anyio, HISTORIES]


async def exported(service: MemoryService, memory_id: str) -> dict[str, object]:
    record = await service.history.get(memory_id)
    assert record is not None
    return to_json(record, await service.history.history(memory_id), None)


async def test_skip_keeps_and_replace_overwrites_an_existing_memory(service: MemoryService) -> None:
    added = (await service.add("Drinks tea", Scope("alice"), {"k": "old"}, infer=False)).results[0]
    line = await exported(service, added.id)
    line["memory"] = "Drinks coffee"
    line["metadata"] = {"k": "new"}
    line["history"][0]["new_memory"] = "Drinks coffee"  # type: ignore[index]
    model = service.embedder.model_id

    assert await service.import_batch([line], "skip", model) == {"imported": 0, "skipped": 1, "refused": []}
    assert (await service.get(added.id)).memory == "Drinks tea"

    assert await service.import_batch([line], "replace", model) == {"imported": 1, "skipped": 0, "refused": []}
    item = await service.get(added.id)
    assert item.memory == "Drinks coffee" and item.metadata == {"k": "new"}
    events = (await service.memory_history(added.id)).events
    assert [(e.event, e.new_memory) for e in events] == [("ADD", "Drinks coffee")]
    hits = (await service.search("coffee", Scope("alice"))).results
    assert hits[0].id == added.id
    await service.flush()
    report = await doctor.check(service)
    assert report.clean, report.lines()

    again = await service.import_batch([line], "replace", model)  # replacing with the same is harmless
    assert again == {"imported": 1, "skipped": 0, "refused": []}
    assert len((await service.memory_history(added.id)).events) == 1


async def test_a_bad_option_changes_nothing_and_a_bad_line_is_refused_alone(service: MemoryService) -> None:
    added = (await service.add("Drinks tea", Scope("alice"), infer=False)).results[0]
    line = await exported(service, added.id)
    with pytest.raises(InvalidInput, match="on_conflict"):
        await service.import_batch([line], "merge", None)
    bad = dict(line, id="not-a-uuid")
    outcome = await service.import_batch([bad, line], "skip", None)
    assert outcome["imported"] == 0 and outcome["skipped"] == 1, outcome
    [refused] = outcome["refused"]
    assert refused["index"] == 0 and refused["id"] == "not-a-uuid" and "not a valid memory id" in refused["error"]
    with pytest.raises(InvalidInput, match="history event"):
        from_json(dict(line, history=[{"id": "x", "event": "BOGUS"}]), 8192)
    assert [e.event for e in (await service.memory_history(added.id)).events] == ["ADD"]
