"""kill -9 of the supervisor loses nothing that was acknowledged, and a clean turn never
sees a message twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgpack

from hive.client import ConnectionLost, HiveError
from tests.hive_harness import RunningHive

CONFIG = """
[hive]
backoff_initial = 0.1
max_turn_messages = 20

[[agent]]
name = "manager"

[[agent]]
name = "src"

[[agent]]
name = "sink"
[[agent.script]]
match = "*"
do = [{op = "text", text = "got {id}"}]
"""

KILL_AFTER_ACKS = 400


def send_until_cut(hive: RunningHive, acked: list[int], enough: threading.Event) -> None:
    try:
        with hive.agent("src", timeout=10) as src:
            for i in range(100_000):
                acked.append(src.call("send", to="sink", body=f"m{i}")["id"])
                if len(acked) == KILL_AFTER_ACKS:
                    enough.set()
    except (ConnectionLost, HiveError, OSError):
        pass  # the supervisor was killed under us: the last send may or may not be stored
    finally:
        enough.set()


def test_kill_9_during_sends_loses_no_acknowledged_message(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG)
    acked: list[int] = []
    enough = threading.Event()
    sender = threading.Thread(target=send_until_cut, args=(hive, acked, enough))
    sender.start()
    assert enough.wait(120), "sender never reached the kill point"
    hive.kill()  # SIGKILL while sends are in flight and sink's turns are running
    sender.join(30)
    assert len(acked) >= KILL_AFTER_ACKS

    with hive.db() as db:
        stored = {row[0] for row in db.execute("SELECT id FROM messages WHERE recipient='sink'")}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"

    hive = hive.restart()
    hive.wait_until(
        lambda: (
            hive.status("sink")["inbox_depth"] == 0 and hive.status("sink")["turn_state"] == "idle"
        ),
        timeout=120,
        what="sink to work through its inbox after the restart",
    )
    with hive.db() as db:
        states = dict(db.execute("SELECT id, state FROM messages WHERE recipient='sink'"))
        clean_turns = [
            msgpack.unpackb(row[0])
            for row in db.execute(
                "SELECT message_ids FROM turns WHERE agent='sink' AND exit_class='ok'"
            )
        ]
    assert all(states[i] == "delivered" for i in acked), "an acknowledged message never delivered"
    seen: dict[int, int] = {}
    for ids in clean_turns:
        for i in ids:
            seen[i] = seen.get(i, 0) + 1
    twice = {i: n for i, n in seen.items() if n > 1}
    assert not twice, f"messages given to more than one clean turn: {twice}"
    assert set(acked) <= set(seen), "every acknowledged message went through a clean turn"


HOLDER = """
[[agent]]
name = "manager"

[[agent]]
name = "holder"
[[agent.script]]
match = "hold"
do = [{op = "recv", wait = 60}]
[[agent.script]]
do = [{op = "set_status", text = "did {body}"}]
"""


def test_a_turn_cut_by_kill_9_is_ended_as_cancelled_at_the_next_start(
    make_hive: Callable[..., RunningHive],
) -> None:
    """Nothing runs a turn once its supervisor is killed: the next start records it as
    cancelled (it used to stay open, with no end, for good), and its message comes again."""
    hive = make_hive(HOLDER)
    sent = hive.admin("send", to="holder", body="hold")["id"]
    hive.wait_until(lambda: hive.status("holder")["turn_state"] == "waiting_recv", what="held")
    [cut] = hive.turns("holder")
    assert cut["ended_at"] is None
    hive.kill()
    restarted_at = time.time()
    hive = hive.restart()
    turns = {t["id"]: t for t in hive.turns("holder")}
    # It ended when it was last heard of, not at the next start.
    assert cut["started_at"] <= turns[cut["id"]]["ended_at"] < restarted_at
    assert turns[cut["id"]]["exit_class"] == "cancelled"
    assert "supervisor stopped during this turn" in turns[cut["id"]]["detail"]
    # Its message was never delivered: a new turn takes it (and holds again).
    [again] = hive.wait_until(
        lambda: [t for t in hive.turns("holder") if t["id"] != cut["id"]], what="a new turn"
    )
    assert sent in again["message_ids"]
    with hive.db() as db:
        [(state,)] = db.execute("SELECT state FROM messages WHERE id = ?", (sent,)).fetchall()
    assert state == "pending"
