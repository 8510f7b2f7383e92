"""Attacks on the delivery rule from outside: actors of a real supervisor crash (fault
injection) while clients send, receive and acknowledge. After any such sequence, every
message pending in the database is in its agent's inbox (and so is given out again), and
nothing a client acknowledged is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hive.client import HiveError, SyncClient
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]
FAULTS = {"HIVE_FAULT_INJECTION": "1"}

AGENTS = [f"a{i}" for i in range(6)]
CONFIG = '[[agent]]\nname = "manager"\n' + "".join(
    f'\n[[agent]]\nname = "{name}"\ninbox_cap = 100000\nrate_limit_per_minute = 10000000\n'
    for name in AGENTS
)
# The supervisor restarts an actor at most 10 times a minute before it restarts the daemon.
STORE_FAULTS = 9


def send_recv_ack(hive: RunningHive, name: str, stop: threading.Event) -> None:
    """Sends to itself, receives and acknowledges, as fast as it can (outside any turn,
    so every ack is a delivered mark the Store must commit)."""
    while not stop.is_set():
        try:
            with SyncClient(hive.agent_socket(name), timeout=10) as c:
                while not stop.is_set():
                    c.call("send", to=name, body="x")
                    result = c.request("recv", wait_seconds=0)
                    c.ack(result)  # may fail: the message then stays pending
        except (HiveError, OSError):
            pass


def db_pending(hive: RunningHive, name: str) -> int:
    with hive.db() as db:
        rows = db.execute(
            "SELECT count(*) FROM messages WHERE recipient = ? AND state = 'pending'", (name,)
        )
        return int(rows.fetchall()[0][0])


def drain(hive: RunningHive, name: str) -> None:
    with hive.agent(name) as c:
        while c.call("recv", wait_seconds=0)["messages"]:
            pass


def test_acks_during_store_restarts_leave_no_message_stranded(make_hive: MakeHive) -> None:
    """A delivered mark told to the Store while it was being restarted used to be
    dropped: the agent had already let the message go, the database kept it pending,
    and nobody ever got it again (inbox_depth 0, the database 1-2 per agent)."""
    hive = make_hive(CONFIG, env=FAULTS)
    hive.admin("pause", names=AGENTS)
    stop = threading.Event()
    clients = [threading.Thread(target=send_recv_ack, args=(hive, n, stop)) for n in AGENTS]
    for t in clients:
        t.start()
    try:
        for _ in range(STORE_FAULTS):
            time.sleep(0.3)  # traffic between faults, not a synchronisation
            hive.admin("inject_fault", target="store")
    finally:
        stop.set()
        for t in clients:
            t.join(30)
    for name in AGENTS:
        # What the database holds pending, the agent holds too, and gives out again.
        hive.wait_until(
            lambda n=name: hive.status(n)["inbox_depth"] == db_pending(hive, n),
            timeout=10,
            what=f"{name}'s inbox to agree with the database",
        )
        drain(hive, name)
        assert db_pending(hive, name) == 0, f"messages stranded pending for {name}"
