"""Which write a Milvus server search waits for (stores/milvus_client.py `WriteClock.wait_for`):
the latest recorded write to its scope, never an older one."""

from __future__ import annotations

from milvus_memory_mcp.stores.milvus_client import WriteClock

NOTED = {"": 500, "user_id=a": 100, "agent_id=x": 300, "user_id=b": 500}


def clock(latest: int = 0) -> WriteClock:
    c = WriteClock(None)
    c.latest = latest
    return c


def test_a_search_of_one_scope_waits_for_that_scopes_latest_write_only() -> None:
    assert clock().wait_for(NOTED, ["user_id=a"]) == 100
    assert clock().wait_for(NOTED, ["user_id=b"]) == 500


def test_a_scope_pinned_by_several_terms_waits_for_the_smallest_of_their_timestamps() -> None:
    # a memory of user a and agent x carries both terms: each was noted at its write or later
    assert clock().wait_for(NOTED, ["user_id=a", "agent_id=x"]) == 100


def test_a_term_never_noted_waits_for_the_collections_latest_write() -> None:
    assert clock().wait_for(NOTED, ["user_id=new"]) == 500
    assert clock().wait_for(NOTED, ["user_id=a", "run_id=new"]) == 100


def test_a_search_pinning_no_scope_waits_for_every_write() -> None:
    assert clock().wait_for(NOTED, []) == 500


def test_writes_of_unknown_scope_are_waited_for_by_every_search() -> None:
    assert clock().wait_for({**NOTED, "*": 250}, ["user_id=a"]) == 250


def test_while_this_process_has_an_unrecorded_write_every_search_waits_for_it() -> None:
    assert clock(latest=700).wait_for(NOTED, ["user_id=a"]) == 700
    assert clock(latest=400).wait_for(NOTED, ["user_id=a"]) == 100  # recorded (the collection's is later)
    assert clock(latest=42).wait_for({}, ["user_id=a"]) == 42  # no history: its own writes
