"""Attacks on the delivery rule from outside: actors of a real supervisor crash (fault
injection) while clients send, receive and acknowledge. After any such sequence, every
message pending in the database is in its agent's inbox (and so is given out again), and
nothing a client acknowledged is lost.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hive.client import HiveError, SyncClient
from hive.wire import FrameDecoder, encode_frame, request
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


def test_an_answer_committed_as_the_approvals_actor_dies_reaches_the_asker(
    make_hive: MakeHive,
) -> None:
    """The outcome of a question is stored as an inbox message, but its recipient heard
    of it only from the Approvals actor after the commit: an actor that died in between
    (here, a fault pipelined right behind the answer) left the answer pending in the
    database and in nobody's inbox until the daemon restarted."""
    from tests.control_support import CONFIG as CONTROL_CONFIG
    from tests.control_support import pending

    hive = make_hive(CONTROL_CONFIG, env=FAULTS)
    hive.admin("pause", names=["alice"])
    for round_no in range(1, 4):
        # The restarted Approvals actor is back (until then, asks are refused).
        hive.wait_until(lambda: isinstance(pending(hive), list), what="approvals to be up")
        with hive.agent("alice") as alice:
            alice.send_raw(encode_frame(request(1, "ask_operator", question=f"q{round_no}")))
            [row] = hive.wait_until(
                lambda: (rows := pending(hive)) and rows[0]["waiting"] == 1 and rows,
                what="the question to be held",
            )
            for _ in range(10):
                # Pipelined, but the admin socket may hand the fault over first (the
                # answer is checked on the IO side before it is passed on): then the
                # answer meets a dead actor, is refused, and is sent again.
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
                    admin.connect(str(hive.admin_path))
                    admin.sendall(
                        encode_frame(request(1, "answer", id=row["id"], answer="42"))
                        + encode_frame(request(2, "inject_fault", target="approvals"))
                    )
                    replies = read_replies(admin, 2)
                if replies[1].get("ok") or answered(hive, row["id"]):
                    break
                hive.wait_until(lambda: isinstance(pending(hive), list), what="approvals")
            hive.wait_until(lambda rid=row["id"]: answered(hive, rid), what="the answer to commit")
        # Whatever the asker's held reply said, the answer is in its inbox.
        hive.wait_until(
            lambda n=round_no: (
                hive.status("alice")["inbox_depth"] == db_pending(hive, "alice") == n
            ),
            timeout=10,
            what="the answer in alice's inbox",
        )


def read_replies(sock: socket.socket, count: int) -> dict[int, dict[str, Any]]:
    """The replies to ``count`` pipelined requests, by request id."""
    decoder = FrameDecoder()
    got: dict[int, dict[str, Any]] = {}
    sock.settimeout(30)
    while len(got) < count:
        data = sock.recv(65536)
        if not data:
            break
        for frame in decoder.feed(data):
            if isinstance(frame, dict):
                got[int(frame.get("id", 0))] = frame
    return got


def answered(hive: RunningHive, approval_id: int) -> bool:
    with hive.db() as db:
        rows = db.execute("SELECT status FROM approvals WHERE id = ?", (approval_id,))
        return [r[0] for r in rows] == ["answered"]


SLOW_CONFIG = """
[[agent]]
name = "manager"

[[agent]]
name = "worker"
on_kick = [{op = "sleep", seconds = 1.5}]
"""


def test_a_connection_closing_late_does_not_take_back_what_another_reader_holds(
    make_hive: MakeHive,
) -> None:
    """A message handed over during a turn goes back to the inbox when that turn ends
    unacknowledged, yet the connection that had it still listed it: when it closed, it
    took the message back from whichever reader held it by then, and that reader (which
    never failed an acknowledgement) got it a second time."""
    hive = make_hive(SLOW_CONFIG)
    hive.admin("kick", names=["worker"], note="work")
    hive.wait_until(lambda: hive.status("worker")["turn_id"] is not None, what="a turn")
    msg_id = hive.admin("send", to="worker", body="m")["id"]
    hive.admin("pause", names=["worker"])  # the running turn ends; no next one starts
    early = hive.agent("worker")
    try:
        taken = early.request("recv", wait_seconds=0)  # handed over during the turn
        assert [m["id"] for m in taken["messages"]] == [msg_id]
        hive.wait_until(lambda: hive.status("worker")["turn_id"] is None, what="turn end")
        with hive.agent("worker") as late:
            first = late.request("recv", wait_seconds=10)  # back in the inbox: given again
            assert [m["id"] for m in first["messages"]] == [msg_id]
            early.close()  # the first reader hangs up, never having acknowledged
            # late holds it, unacknowledged but not refused: nothing comes a second time.
            again = late.request("recv", wait_seconds=1)
            assert [m["id"] for m in again["messages"]] == []
            assert late.ack(first)
    finally:
        early.close()
    hive.wait_until(lambda: db_pending(hive, "worker") == 0, what="the ack to commit")


def test_a_recv_parked_when_its_agent_actor_dies_is_still_answered(make_hive: MakeHive) -> None:
    """A recv waiting for mail lived only in the Agent actor: one that died took it
    along, and the reader waited forever (no reply, not even the empty one at the end of
    its wait), while the next message sat in the inbox."""
    hive = make_hive(CONFIG, env=FAULTS)
    hive.admin("pause", names=["a0"])
    with hive.agent("a0", timeout=15) as reader:
        reader.send_raw(
            encode_frame(request(7, "recv", wait_seconds=20)) + encode_frame(request(8, "whoami"))
        )
        # Answered by the socket after it told a0 of the recv: the fault comes after it.
        assert reader.read_frame()["id"] == 8
        hive.admin("inject_fault", target="agent:a0")
        hive.wait_until(lambda: hive.status("a0")["name"] == "a0", what="a0 to be back")
        sent = hive.admin("send", to="a0", body="hello")["id"]
        frame = reader.read_frame()
        assert frame["id"] == 7 and [m["id"] for m in frame["result"]["messages"]] == [sent]
