"""The private Lite socket keeps a client that pings while idle.

pymilvus pings its connection every 10 s, calls or none. With gRPC's default server policy those
pings are strikes: after two the server sent GOAWAY "too_many_pings", the connection dropped and
an error line reached stderr about two minutes into every idle spell of a long-running server.
Here a client pings every 0.2 s (the same policy, faster), which the default policy drops within
a few seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from milvus_memory_mcp.stores.lite import LiteServer


def test_an_idle_client_that_pings_keeps_its_connection(tmp_path: Path) -> None:
    server = LiteServer.start(tmp_path / "milvus.db")
    channel = grpc.insecure_channel(
        server.uri,
        options=[
            ("grpc.keepalive_time_ms", 200),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging with no call in flight
        ],
    )
    states: list[grpc.ChannelConnectivity] = []
    lock = threading.Lock()

    def seen(state: grpc.ChannelConnectivity) -> None:
        with lock:
            states.append(state)

    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        channel.subscribe(seen)
        time.sleep(4)  # 20 pings; the default policy dropped the connection after 3 (~0.6-3.5 s)
        with lock:
            assert states and set(states) == {grpc.ChannelConnectivity.READY}, states
    finally:
        channel.close()
        server.close()
