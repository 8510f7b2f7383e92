"""Messages flow between agents through their real sockets, Bus, Store and turn loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.hive_harness import RunningHive

CONFIG = """
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "alice"

[[agent]]
name = "bob"
[[agent.script]]
match = "ping"
do = [{op = "set_status", text = "answering {from}"}, {op = "reply", body = "pong ({body})"}]
"""


def test_message_goes_a_to_b_and_back(make_hive: Callable[..., RunningHive]) -> None:
    hive = make_hive(CONFIG)
    # alice is played by this test: pause her so her own turn loop leaves her mail alone.
    hive.admin("pause", names=["alice"])
    with hive.agent("alice") as alice:
        sent = alice.call("send", to="bob", body="ping 1")
        assert isinstance(sent["id"], int)
        got = alice.call("recv", wait_seconds=60)
    [reply] = got["messages"]
    assert reply["from"] == "bob"
    assert reply["to"] == "alice"
    assert reply["body"] == "pong (ping 1)"
    # bob answered inside his turn; once that turn has ended cleanly the ping is
    # delivered, and recv delivered the pong.
    hive.wait_until(lambda: hive.status("bob")["last_turn"], what="bob's turn to end")
    states = {m["id"]: m["state"] for m in hive.messages("bob")}
    assert states[sent["id"]] == "delivered"
    assert states[reply["id"]] == "delivered"
    assert hive.status("bob")["status_text"] == "answering alice"
    [turn] = hive.turns("bob")
    assert turn["exit_class"] == "ok" and turn["message_ids"] == [sent["id"]]


def test_long_poll_recv_wakes_when_a_message_arrives(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["alice"])
    result: dict[str, Any] = {}

    def wait_for_mail() -> None:
        with hive.agent("alice", timeout=200) as alice:
            started = time.monotonic()
            result["got"] = alice.call("recv", wait_seconds=120)
            result["waited"] = time.monotonic() - started

    waiter = threading.Thread(target=wait_for_mail)
    waiter.start()
    # The recv is parked in alice's actor once her row says so.
    hive.wait_until(
        lambda: (
            hive.status("alice")["turn_state"] == "idle"
            and hive.admin("send", to="alice", body="wake up")
        ),
        what="operator message to be accepted",
    )
    waiter.join(timeout=150)
    assert not waiter.is_alive()
    [msg] = result["got"]["messages"]
    assert msg["body"] == "wake up" and msg["from"] == "operator"
    # It came back with the message, far from the 120 s limit: it woke on arrival.
    assert result["waited"] < 60


def test_recv_with_nothing_waiting_returns_empty_after_its_wait(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG)
    with hive.agent("alice") as alice:
        assert alice.call("recv", wait_seconds=0) == {"messages": []}
        assert alice.call("recv", wait_seconds=0.3) == {"messages": []}


def test_agent_with_pending_mail_is_kicked_on_start(make_hive: Callable[..., RunningHive]) -> None:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["bob"])
    with hive.agent("alice") as alice:
        alice.call("send", to="bob", body="ping while bob sleeps")
    hive.wait_until(lambda: hive.status("bob")["inbox_depth"] == 1, what="bob's mail to wait")
    hive.terminate()
    # Unpause in the db is the operator's job; here a fresh hive with bob resumed.
    hive = hive.restart()
    assert hive.status("bob")["paused"] is True  # pause survives a restart
    hive.admin("resume", names=["bob"])
    hive.wait_until(
        lambda: any(m["body"] == "pong (ping while bob sleeps)" for m in hive.messages("alice")),
        what="bob to answer the mail that waited across the restart",
    )
