"""The delivery rule: a message leaves ``pending`` only when its receiver provably has it.

Each test here reproduces one way an acknowledged message used to be lost: a recv reply
too large for a frame, a daemon killed between a recv's reply and its acknowledgement, a
client that hangs up, mail sent while the daemon boots, an answered question whose held
reply never reached its asker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from hive.client import HiveError, SyncClient
from hive.wire import MAX_BODY_BYTES, MAX_FRAME_BYTES, encode_frame, request
from tests.control_support import wait_pending
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

# alice is paused: these tests play her process themselves, through her socket.
CONFIG = """
[hive]
backoff_initial = 0.1

[[agent]]
name = "manager"

[[agent]]
name = "alice"
inbox_cap = 100000

[[agent]]
name = "bob"
rate_limit_per_minute = 1000000
"""


def start(make_hive: MakeHive) -> RunningHive:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["alice"])
    return hive


def pending_ids(hive: RunningHive, agent: str) -> list[int]:
    with hive.db() as db:
        rows = db.execute(
            "SELECT id FROM messages WHERE recipient = ? AND state = 'pending' ORDER BY id",
            (agent,),
        )
        return [int(r[0]) for r in rows]


def recv_all(hive: RunningHive, agent: str, wait_first: float = 0) -> list[dict[str, Any]]:
    """Every message waiting for ``agent``, through as many recvs as it takes; the first
    waits up to ``wait_first`` s for one (messages given back by a closed connection
    reach the agent a moment after the close)."""
    got: list[dict[str, Any]] = []
    wait = wait_first
    with hive.agent(agent) as c:
        while True:
            result = c.call("recv", wait_seconds=wait)
            wait = 0
            if not result["messages"]:
                return got
            got.extend(result["messages"])


# --- 1: a recv never takes more than fits in one frame ----------------------------------


def test_a_recv_takes_only_what_fits_one_frame_and_the_rest_stays_pending(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    body = "x" * (MAX_BODY_BYTES - 1024)
    count = 2 * MAX_FRAME_BYTES // len(body) + 1  # twice what one frame holds
    sent = [hive.admin("send", to="alice", body=f"{i}:{body}")["id"] for i in range(count)]

    with hive.agent("alice") as alice:
        first = alice.call("recv", wait_seconds=0)
        assert 0 < len(first["messages"]) < count
        assert first["more"] is True
        assert first["ack_ids"] == [m["id"] for m in first["messages"]]
    rest = recv_all(hive, "alice")
    got = [m["id"] for m in first["messages"] + rest]
    assert got == sent, "every message comes, once, in order"
    assert pending_ids(hive, "alice") == []


# --- 2 and 3: handed over but never acknowledged ----------------------------------------


def test_a_reply_that_is_never_acknowledged_leaves_its_messages_pending(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(3)]
    with hive.agent("alice") as reader:
        taken = reader.request("recv", wait_seconds=0)  # read, then hang up without an ack
        assert [m["id"] for m in taken["messages"]] == sent
    # The connection closed unacknowledged: everything is back for the next reader.
    assert [m["id"] for m in recv_all(hive, "alice", wait_first=30)] == sent
    assert pending_ids(hive, "alice") == []


def test_a_client_that_half_closes_after_its_recv_takes_nothing(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(3)]
    for _ in range(5):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(hive.agent_socket("alice")))
        raw.sendall(encode_frame(request(1, "recv", wait_seconds=0)))
        raw.shutdown(socket.SHUT_WR)  # it may still read, but it will never acknowledge
        raw.close()
    assert [m["id"] for m in recv_all(hive, "alice", wait_first=30)] == sent


def test_kill_9_between_a_recv_reply_and_its_ack_loses_nothing(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(5)]
    with hive.agent("alice") as reader:
        taken = reader.request("recv", wait_seconds=0)
        assert [m["id"] for m in taken["messages"]] == sent
        hive.kill()  # the reply was read; the ack never left
    hive = hive.restart()
    assert pending_ids(hive, "alice") == sent
    assert [m["id"] for m in recv_all(hive, "alice")] == sent


def test_an_acknowledged_recv_is_delivered_and_never_comes_again(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(3)]
    with hive.agent("alice") as reader:
        taken = reader.request("recv", wait_seconds=0)
        assert reader.request("ack", ids=taken["ack_ids"]) == {"acked": 3}
    # The ack is answered once the delivered mark is stored: a kill now loses nothing.
    hive.kill()
    hive = hive.restart()
    assert pending_ids(hive, "alice") == []
    states = {m["id"]: m["state"] for m in hive.messages("alice")}
    assert all(states[i] == "delivered" for i in sent)
    assert recv_all(hive, "alice") == []


def test_ack_rejects_what_is_not_a_list_of_message_ids(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        for bad in ("7", [1, "2"], [-1], [2**64 - 1], [True], list(range(1, 10_002))):
            try:
                alice.request("ack", ids=bad)
            except HiveError as exc:
                assert exc.code == "bad_request" and "ids" in exc.message
            else:
                raise AssertionError(f"ack accepted {bad!r:.40}")
        # Ids that are not this agent's, or were never handed over, are simply not acked.
        assert alice.request("ack", ids=[123456]) == {"acked": 0}


# --- 4: mail sent while the daemon boots --------------------------------------------------


def test_mail_sent_while_the_daemon_boots_is_neither_stranded_nor_doubled(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    acked: list[int] = []
    done = threading.Event()

    def flood() -> None:
        # Sends from the moment bob's socket answers, through boot, until told to stop.
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            try:
                with SyncClient(hive.agent_socket("bob"), timeout=10) as bob:
                    while not done.is_set():
                        acked.append(bob.call("send", to="alice", body="during boot")["id"])
            except (HiveError, OSError):
                time.sleep(0.001)  # the daemon is down or its socket not there yet

    def counted(h: RunningHive) -> bool:
        return bool(h.status("alice")["inbox_depth"] == len(pending_ids(h, "alice")))

    for _ in range(3):
        sender = threading.Thread(target=flood)
        sender.start()
        before = len(acked)
        hive = hive.restart()  # SIGTERM, then a boot with the sender knocking
        hive.wait_until(lambda: len(acked) > before + 50, what="sends after the boot")  # noqa: B023
        done.set()
        sender.join(60)
        done.clear()
        # What the agent holds is what the store holds: nothing pending behind its back.
        hive.wait_until(
            partial(counted, hive), what="alice's inbox depth to count every pending message"
        )
    got = [m["id"] for m in recv_all(hive, "alice")]
    # Every acknowledged message comes. A send cut by the restart may have been stored
    # without its sender hearing so (at-least-once: it would send again); nothing else.
    assert not set(acked) - set(got), f"{len(set(acked) - set(got))} stranded"
    assert len(set(got) - set(acked)) <= 3, "only the sends cut by the 3 restarts"
    assert len(got) == len(set(got)), "no message twice"


# --- 5: an answered question whose held reply never reached its asker ----------------------


def test_an_answer_whose_reply_was_never_acknowledged_reaches_the_inbox_after_kill_9(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    box: dict[str, Any] = {}
    asker = hive.agent("alice", timeout=120)

    def ask() -> None:
        box["result"] = asker.request("ask_operator", question="Ship it?")

    thread = threading.Thread(target=ask)
    thread.start()
    [row] = wait_pending(hive)
    assert hive.admin("answer", id=row["id"], answer="ship")["status"] == "answered"
    thread.join(60)
    assert box["result"]["answer"] == "ship"
    [notice_id] = box["result"]["ack_ids"]
    hive.kill()  # the asker read the answer, but never acknowledged it
    asker.close()
    hive = hive.restart()
    [notice] = recv_all(hive, "alice")
    assert notice["id"] == notice_id
    assert notice["meta"]["question"] == row["id"] and "ship" in notice["body"]


def test_an_answer_acknowledged_with_its_reply_never_comes_again(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    box: dict[str, Any] = {}

    def ask() -> None:
        with hive.agent("alice", timeout=120) as asker:
            box["result"] = asker.call("ask_operator", question="Ship it?")

    thread = threading.Thread(target=ask)
    thread.start()
    [row] = wait_pending(hive)
    hive.admin("answer", id=row["id"], answer="ship")
    thread.join(60)
    assert box["result"]["answer"] == "ship"
    hive.kill()
    hive = hive.restart()
    assert recv_all(hive, "alice") == []


def test_an_answer_for_an_asker_who_hung_up_goes_to_its_inbox_once(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as asker:
        asker.send_raw(encode_frame(request(1, "ask_operator", question="Still there?")))
        [row] = wait_pending(hive)
    hive.admin("answer", id=row["id"], answer="yes")
    [notice] = recv_all(hive, "alice", wait_first=30)
    assert notice["meta"]["question"] == row["id"]
    assert recv_all(hive, "alice") == []


# --- bounds ---------------------------------------------------------------------------


def test_an_agent_cannot_park_recvs_without_bound(make_hive: MakeHive) -> None:
    from hive.actors.agent import MAX_WAITING_RECVS

    hive = start(make_hive)
    with hive.agent("alice") as alice:
        for i in range(1, MAX_WAITING_RECVS + 2):
            alice.send_raw(encode_frame(request(i, "recv", wait_seconds=120)))
        refused = alice.read_frame()  # the only reply that comes before the 120 s
        assert refused["id"] == MAX_WAITING_RECVS + 1
        assert refused["error"]["code"] == "too_many_recvs"
        # The parked ones are still served: a message goes to the first of them.
        sent = hive.admin("send", to="alice", body="for the first waiter")
        served = alice.read_frame()
        assert served["id"] == 1 and served["result"]["ack_ids"] == [sent["id"]]
    # Hung up: its parked recvs are withdrawn, so a new reader may park again, and the
    # message it never acknowledged comes to that reader.
    with hive.agent("alice") as alice:
        again = alice.call("recv", wait_seconds=30)
        assert [m["id"] for m in again["messages"]] == [sent["id"]]
