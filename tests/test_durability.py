"""kill -9 of the supervisor loses nothing that was acknowledged, and a clean turn never
sees a message twice."""

from __future__ import annotations

import threading
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
