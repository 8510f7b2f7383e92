"""Turn admission (hive.actors.admission) through a real supervisor and scripted agents:
under ``max_concurrent_turns`` and ``memory_budget_mb`` turns wait in one queue, run in
order (operator and manager mail first), lose nothing, and say why they wait in the
agent's row and in ``hivectl list``. The LRU retirement of idle sessions needs session
processes: tests/test_claude_persistent.py runs it with the real claude CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from tests.control_support import hivectl
from tests.hive_harness import RunningHive

# A worker's turn for "hold" waits (recv) until its next message: the test decides when it
# ends. Any other message is only noted.
WORKER = """
[[agent]]
name = "{name}"
[[agent.script]]
match = "hold"
do = [{{op = "recv", wait = 60}}]
[[agent.script]]
do = [{{op = "set_status", text = "did {{body}}"}}]
"""


def config(settings: str, workers: int) -> str:
    blocks = [WORKER.format(name=f"w{i}") for i in range(1, workers + 1)]
    players = '[[agent]]\nname = "peer"\n\n[[agent]]\nname = "manager"\n'
    return f"[hive]\nbackoff_initial = 0.2\n{settings}\n{players}" + "".join(blocks)


def queued(hive: RunningHive, name: str, why: str) -> dict[str, Any] | None:
    row = hive.status(name)
    if row["turn_state"] == "queued" and why in row["queue_reason"]:
        return row
    return None


def started_order(hive: RunningHive, names: list[str]) -> list[str]:
    turns = [(t["id"], name) for name in names for t in hive.turns(name)]
    return [name for _, name in sorted(turns)]


def all_delivered(hive: RunningHive, names: list[str]) -> bool:
    return all(m["state"] == "delivered" for n in names for m in hive.messages(n))


def test_turns_wait_for_a_slot_in_order_operator_and_manager_first(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(config("max_concurrent_turns = 1", 5))
    hive.admin("pause", names=["peer", "manager"])  # played by this test
    hive.admin("send", to="w1", body="hold")
    hive.wait_until(lambda: hive.status("w1")["turn_state"] == "waiting_recv", what="w1 holds")

    with hive.agent("peer") as peer, hive.agent("manager") as manager:
        peer.call("send", to="w2", body="peer mail")
        hive.wait_until(lambda: queued(hive, "w2", "max_concurrent_turns = 1"), what="w2 waits")
        peer.call("send", to="w3", body="peer mail")
        hive.wait_until(lambda: queued(hive, "w3", "1 turn(s) ahead"), what="w3 behind w2")
        manager.call("send", to="w5", body="manager mail")
        hive.wait_until(lambda: queued(hive, "w5", "max_concurrent_turns"), what="w5 first")
        hive.admin("send", to="w4", body="operator mail")
        hive.wait_until(lambda: queued(hive, "w4", "1 turn(s) ahead"), what="w4 second")
        # Each queued agent's row learns its new place from the Admission actor on its own
        # thread: w4's row may show its place before w2's and w3's show theirs.
        hive.wait_until(
            lambda: queued(hive, "w2", "2 turn(s) ahead") and queued(hive, "w3", "3 turn(s) ahead"),
            what="w2 and w3 moved back behind w5 and w4",
        )

        listed = hivectl(hive, "list", json_out=False).stdout
        w2_line = next(line for line in listed.splitlines() if line.startswith("w2 "))
        assert "queued" in w2_line and "turn(s) ahead" in w2_line
        assert hivectl(hive, "status", "w5").json()["queue_reason"].startswith("1 turns running")

        peer.call("send", to="w1", body="release")

    names = ["w1", "w2", "w3", "w4", "w5"]
    hive.wait_until(lambda: all(hive.status(n)["last_turn"] for n in names), what="all turns")
    assert started_order(hive, names) == ["w1", "w5", "w4", "w2", "w3"]
    hive.wait_until(lambda: all_delivered(hive, names), what="every message delivered")
    assert [hive.status(n)["status_text"] for n in ("w2", "w4")] == [
        "did peer mail",
        "did operator mail",
    ]
    assert all(hive.status(n)["queue_reason"] == "" for n in names)


def test_a_memory_budget_queues_turns_with_the_measured_sizes_in_the_reason(
    make_hive: Callable[..., RunningHive],
) -> None:
    # 1 MiB: no two scripted turns (a Python process each) fit, so they run one at a time.
    # The first is admitted alone (nothing to wait for) and measured while it holds; until
    # it has ended, no size is known and the next one waits for that.
    hive = make_hive(config("memory_budget_mb = 1", 3))
    hive.admin("send", to="w1", body="hold")
    hive.wait_until(lambda: hive.status("w1")["turn_state"] == "waiting_recv", what="w1 holds")
    hive.admin("send", to="w2", body="hold")
    hive.wait_until(lambda: queued(hive, "w2", "first turn to be measured"), what="w2 waits")
    hive.wait_until(lambda: "measuring w1's turn" in hive.log_tail(100), what="w1 measured")
    hive.admin("send", to="w1", body="release")
    hive.wait_until(lambda: hive.status("w2")["turn_state"] == "waiting_recv", what="w2 holds")
    hive.admin("send", to="w3", body="two")
    row = hive.wait_until(lambda: queued(hive, "w3", "MiB for this turn"), what="w3 waits")
    assert "memory_budget_mb = 1" in row["queue_reason"], row
    assert "MiB in use" in hivectl(hive, "list", json_out=False).stdout

    hive.admin("send", to="w2", body="release")
    names = ["w1", "w2", "w3"]
    hive.wait_until(lambda: all(hive.status(n)["last_turn"] for n in names), what="all turns")
    assert started_order(hive, names) == names
    hive.wait_until(lambda: all_delivered(hive, names), what="every message delivered")
    turns = sorted((t for n in names for t in hive.turns(n)), key=lambda t: t["id"])
    for before, after in itertools.pairwise(turns):
        assert before["ended_at"] <= after["started_at"], (before, after)  # never two at once


def test_without_limits_no_turn_waits(make_hive: Callable[..., RunningHive]) -> None:
    hive = make_hive(config("", 2))
    hive.admin("send", to="w1", body="hold")
    hive.wait_until(lambda: hive.status("w1")["turn_state"] == "waiting_recv", what="w1 holds")
    hive.admin("send", to="w2", body="hold")
    hive.wait_until(lambda: hive.status("w2")["turn_state"] == "waiting_recv", what="w2 too")
    hive.admin("send", to="w1", body="release")
    hive.admin("send", to="w2", body="release")
