"""The hop trace (hive.hoptrace): with ``HIVE_HOP_TRACE`` set, the supervisor writes each
message's hops on its way to a reader, in order, when it exits; the file holds ids and
times, never bodies."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hive.wire import FrameDecoder, encode_frame, request
from tests.hive_harness import RunningHive

CONFIG = """
[[agent]]
name = "alice"

[[agent]]
name = "bob"
"""

# A message's hops, in the order they must come; one of lane / to_agent, and handed only
# after to_agent (the Agent handed it over).
ORDER = ["accepted", "committed", "lane", "to_agent", "handed", "replied"]
ATTEMPTS = 20


def read_reply(sock: socket.socket) -> dict[str, Any]:
    decoder = FrameDecoder()
    while True:
        data = sock.recv(65536)
        assert data, "the supervisor closed the connection"
        for frame in decoder.feed(data):
            assert isinstance(frame, dict)
            return frame


def test_every_hop_is_stamped_in_order_and_written_at_exit(
    make_hive: Callable[..., RunningHive], tmp_path: Path
) -> None:
    trace = tmp_path / "hops.json"
    hive = make_hive(CONFIG, env={"HIVE_HOP_TRACE": str(trace)})
    hive.admin("pause", names=["alice"])  # her own turns would take her mail
    # No recv parked: the first message waits in alice's Agent, which hands it over.
    first = hive.admin("send", to="alice", body="secret body one")["id"]
    ids = [first]
    with hive.agent("alice") as alice:
        got = alice.call("recv", wait_seconds=0)
        assert [m["id"] for m in got["messages"]] == [first]
    # A recv parked first: the committing thread answers it (the recv lane). Which side
    # wins a given race is the scheduler's; one of a few tries goes through the lane.
    with socket.socket(socket.AF_UNIX) as raw, hive.agent("bob") as bob:
        raw.connect(str(hive.agent_socket("alice")))
        for n in range(ATTEMPTS):
            raw.sendall(encode_frame(request(n + 1, "recv", wait_seconds=30)))
            sent = bob.call("send", to="alice", body=f"secret body {n}")["id"]
            reply = read_reply(raw)
            assert [m["id"] for m in reply["result"]["messages"]] == [sent]
            raw.sendall(encode_frame(request(1000 + n, "ack", ids=[sent])))
            assert read_reply(raw)["ok"]
            ids.append(sent)
    hive.terminate()
    text = trace.read_text()
    assert "secret" not in text
    hops: dict[int, list[tuple[str, float]]] = {}
    for hop, msg_id, t in json.loads(text):
        hops.setdefault(msg_id, []).append((hop, t))
    paths = []
    for msg_id in ids:
        names = [h for h, _ in hops[msg_id]]
        times = [t for _, t in hops[msg_id]]
        assert times == sorted(times), f"message {msg_id}: hops out of time order: {names}"
        assert names == sorted(names, key=ORDER.index), f"message {msg_id}: {names}"
        assert names[:2] == ["accepted", "committed"] and names[-1] == "replied"
        paths.append(names[2:-1])
    assert paths[0] == ["to_agent", "handed"]
    assert ["lane"] in paths[1:], f"no message went through the recv lane: {paths}"
