"""kill -9 soak: the supervisor is killed again and again at random moments while senders
send, a recv consumer reads (beside a client that asks and hangs up unread), and a turn
consumer works through its inbox. Every
acknowledged message is delivered in the end (0 lost), and every duplicate is explained:
a recv consumer sees a message twice only if its first acknowledgement did not get
through, and a message comes to a second turn only if the turn before did not end
cleanly. A clean turn never sees a message twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from hive.client import HiveError, SyncClient
from hive.wire import encode_frame, request
from tests.hive_harness import RunningHive

# reader is paused: the test's own recv loop plays it. worker's scripted turns record each
# message they get (in the prompt or from a recv inside the turn) as a turn event.
CONFIG = """
[hive]
backoff_initial = 0.05
backoff_max = 0.2
restart_intensity = 1000
max_turn_messages = 20

[[agent]]
name = "manager"

[[agent]]
name = "reader"
inbox_cap = 1000000

[[agent]]
name = "worker"
inbox_cap = 1000000
[[agent.script]]
match = "*"
do = [{op = "recv", wait = 0}]

[[agent]]
name = "src1"
rate_limit_per_minute = 10000000

[[agent]]
name = "src2"
rate_limit_per_minute = 10000000
"""

KILLS = 12
SEED = 20261201


@dataclass
class Ledger:
    """What the clients saw, recorded on their side of the sockets."""

    acked: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # reader: every message id as it came, and whether its ack got through
    received: list[tuple[int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def sender(hive: RunningHive, name: str, ledger: Ledger, stop: threading.Event) -> None:
    i = 0
    try:
        with SyncClient(hive.agent_socket(name), timeout=10) as c:
            while not stop.is_set():
                to = "reader" if i % 2 else "worker"
                msg_id = c.call("send", to=to, body=f"{name}:{i}")["id"]
                with ledger.lock:
                    ledger.acked[to].append(msg_id)
                i += 1
    except (HiveError, OSError):
        pass  # killed under us: the send in flight may or may not be stored


def reader(hive: RunningHive, ledger: Ledger, stop: threading.Event) -> None:
    try:
        with SyncClient(hive.agent_socket("reader"), timeout=10) as c:
            while not stop.is_set():
                result = c.request("recv", wait_seconds=0.2)
                acked = c.ack(result)
                with ledger.lock:
                    ledger.received.extend((m["id"], acked) for m in result["messages"])
    except (HiveError, OSError):
        pass


def hang_up_reader(hive: RunningHive, stop: threading.Event) -> None:
    """Asks for messages and hangs up without reading the answer, again and again."""
    while not stop.is_set():
        try:
            with SyncClient(hive.agent_socket("reader"), timeout=10) as c:
                c.send_raw(encode_frame(request(1, "recv", wait_seconds=0.05)))
        except (HiveError, OSError):
            return


def run_round(hive: RunningHive, ledger: Ledger, rng: random.Random, kill: bool) -> None:
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(hive, "src1", ledger, stop)),
        threading.Thread(target=sender, args=(hive, "src2", ledger, stop)),
        threading.Thread(target=reader, args=(hive, ledger, stop)),
        threading.Thread(target=hang_up_reader, args=(hive, stop)),
    ]
    for t in threads:
        t.start()
    before = sum(len(v) for v in ledger.acked.values())
    target = before + rng.randint(50, 600)
    deadline = time.monotonic() + 60
    while sum(len(v) for v in ledger.acked.values()) < target:
        assert time.monotonic() < deadline, "senders made no progress"
        time.sleep(0.005)  # a random moment, not a synchronisation: any moment will do
    if kill:
        hive.kill()
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive()


def test_kill_9_at_random_moments_loses_nothing_and_explains_every_duplicate(
    make_hive: Callable[..., RunningHive],
) -> None:
    rng = random.Random(SEED)
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["reader"])
    ledger = Ledger()
    for _ in range(KILLS):
        run_round(hive, ledger, rng, kill=True)
        hive = hive.restart()
    run_round(hive, ledger, rng, kill=False)

    # Drain: the reader reads until nothing is left; the worker works through its inbox.
    with SyncClient(hive.agent_socket("reader"), timeout=30) as c:
        while True:
            result = c.request("recv", wait_seconds=0)
            if not result["messages"]:
                break
            assert c.ack(result)
            ledger.received.extend((m["id"], True) for m in result["messages"])
    hive.wait_until(
        lambda: (
            hive.status("worker")["inbox_depth"] == 0
            and hive.status("worker")["turn_state"] == "idle"
        ),
        timeout=120,
        what="worker to work through its inbox",
    )

    # reader: nothing lost; a duplicate only after an acknowledgement that failed.
    seen = [i for i, _ in ledger.received]
    lost = set(ledger.acked["reader"]) - set(seen)
    assert not lost, f"{len(lost)} acknowledged messages never reached reader"
    first_ack: dict[int, bool] = {}
    for msg_id, acked in ledger.received:
        if msg_id in first_ack:
            assert not first_ack[msg_id], f"message {msg_id} came again after its ack"
        first_ack[msg_id] = first_ack.get(msg_id, False) or acked

    # worker: every message seen in a turn that ended ok; no clean turn saw one twice, and a
    # message went to a second turn only if the one before did not end cleanly.
    with hive.db() as db:
        exit_of = dict(db.execute("SELECT id, exit_class FROM turns WHERE agent = 'worker'"))
        sightings: dict[int, list[int]] = defaultdict(list)
        for turn_id, data in db.execute(
            "SELECT e.turn_id, e.data FROM turn_events e JOIN turns t ON t.id = e.turn_id "
            "WHERE t.agent = 'worker' AND e.kind = 'message' ORDER BY e.turn_id, e.seq"
        ):
            sightings[int(msg_id_of(data))].append(int(turn_id))
        pending = [r[0] for r in db.execute(
            "SELECT id FROM messages WHERE recipient IN ('worker', 'reader') "
            "AND state = 'pending'"
        )]  # fmt: skip
    assert not pending, f"{len(pending)} messages still pending after the drain"
    lost = [i for i in ledger.acked["worker"] if not any(
        exit_of.get(t) == "ok" for t in sightings.get(i, [])
    )]  # fmt: skip
    assert not lost, f"{len(lost)} acknowledged messages never reached a clean turn"
    for msg_id, turns in sightings.items():
        per_turn = Counter(turns)
        assert all(n == 1 for n in per_turn.values()), f"a turn saw {msg_id} twice"
        for earlier in turns[:-1]:
            assert exit_of.get(earlier) != "ok", (
                f"message {msg_id} came to turn {turns[-1]} after clean turn {earlier}"
            )
    dups = len(seen) - len(set(seen)) + sum(len(t) - 1 for t in sightings.values())
    print(
        f"kill soak: {KILLS} kills, {len(ledger.acked['reader'])} + "
        f"{len(ledger.acked['worker'])} acknowledged, 0 lost, {dups} duplicates, all explained"
    )
    assert len(ledger.acked["reader"]) + len(ledger.acked["worker"]) > KILLS * 50


def msg_id_of(data: bytes) -> int:
    event = msgpack.unpackb(data)
    return int(event["id"])
