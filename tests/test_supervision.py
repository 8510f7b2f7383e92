"""OTP-style supervision of the actor tree, driven by injected faults (an admin verb that
exists only when the daemon starts with HIVE_FAULT_INJECTION=1)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from hive.client import SyncClient
from tests.hive_harness import RunningHive

CONFIG = """
[[agent]]
name = "manager"

[[agent]]
name = "alice"

[[agent]]
name = "bob"
[[agent.script]]
match = "*"
do = [{op = "reply", body = "pong {body}"}]
"""

FAULTS = {"HIVE_FAULT_INJECTION": "1"}


def pong_count(hive: RunningHive) -> int:
    return sum(1 for m in hive.messages("operator") if m["body"].startswith("pong"))


def test_a_dead_agent_actor_is_restarted_alone_with_its_mail(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG, env=FAULTS)
    hive.admin("pause", names=["alice"])
    with hive.agent("bob") as bob:
        bob.call("send", to="alice", body="kept across the actor restart")
    hive.wait_until(lambda: hive.status("alice")["inbox_depth"] == 1, what="alice's mail")

    hive.admin("inject_fault", target="agent:alice")

    # The restarted actor rebuilt its state from the store: paused, mail pending.
    with hive.agent("alice") as alice:
        got = hive.wait_until(
            lambda: alice.call("recv", wait_seconds=0)["messages"],
            what="alice's restarted actor to hand over her mail",
        )
    assert [m["body"] for m in got] == ["kept across the actor restart"]
    assert hive.status("alice")["paused"] is True
    # Its siblings were untouched (one_for_one) and the hive still works.
    hive.admin("send", to="bob", body="after")
    hive.wait_until(lambda: pong_count(hive) == 1, what="bob to answer")
    assert "restarting agent:alice" in hive.log_tail(200)


def test_a_dead_store_actor_is_restarted_and_nothing_acknowledged_is_lost(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG, env=FAULTS)
    hive.admin("send", to="bob", body="before")
    hive.wait_until(lambda: pong_count(hive) == 1, what="the first answer")
    hive.admin("inject_fault", target="store")
    hive.wait_until(lambda: hive.admin("send", to="bob", body="after"), what="sends to work again")
    hive.wait_until(lambda: pong_count(hive) == 2, what="the second answer")
    assert "restarting store" in hive.log_tail(200)


def test_too_many_actor_deaths_restart_the_whole_daemon(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG, env=FAULTS)
    # The supervisor allows 10 restarts in 60 s; the 11th death makes it give up, so that
    # systemd restarts the daemon from the database.
    for _ in range(10):
        hive.admin("inject_fault", target="hub")
        hive.wait_until(lambda: hive.admin("list"), what="the hub to be back")
    assert hive.process.poll() is None  # 10 restarts are within the intensity
    hive.admin("inject_fault", target="hub")
    assert hive.process.wait(timeout=60) == 1
    assert "restarting the daemon" in hive.log_tail(200)


def test_subscribers_outlive_a_hub_restart_and_are_told_of_the_gap(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG, env=FAULTS)
    with SyncClient(hive.admin_path, timeout=30) as feed:
        feed.call("subscribe", kinds=["agent"])
        assert feed.read_frame()["push"] == "snapshot"
        hive.admin("inject_fault", target="hub")
        # Rows that changed before the fault may still be on their way; the gap follows them.
        frame = feed.read_frame()
        while frame["data"]["kind"] == "agent":
            frame = feed.read_frame()
        assert frame["push"] == "state" and frame["data"]["kind"] == "gap"
        # After the gap the feed goes on: agents republished their rows to the new hub.
        names = set()
        while len(names) < 3:
            frame = feed.read_frame()
            if frame["data"]["kind"] == "agent":
                names.add(frame["data"]["key"])
    assert names == {"manager", "alice", "bob"}
    assert {r["name"] for r in hive.admin("list")["agents"]} == names


def test_the_tree_s_restart_intensity_comes_from_hive_toml(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive("[hive]\ntree_intensity = 2\ntree_period = 600\n" + CONFIG, env=FAULTS)
    for _ in range(2):
        hive.admin("inject_fault", target="hub")
        hive.wait_until(lambda: hive.admin("list"), what="the hub to be back")
    assert hive.process.poll() is None  # 2 restarts are within the intensity
    hive.admin("inject_fault", target="hub")
    assert hive.process.wait(timeout=60) == 1
    assert "3 actor restarts in 600 s" in hive.log_tail(200)


def test_the_tree_is_one_table_and_nothing_registers_itself_on_import() -> None:
    """Every child above the agents is in hive.daemon.supervision_tree, in start order;
    every admin verb in hive.control.admin_verbs.verb_table; no module keeps a list that
    another one appends to when imported."""
    import hive.actors.supervisor as supervisor
    import hive.daemon as daemon
    import hive.io.admin_socket as admin_socket
    import hive.io.agent_socket as agent_socket
    from hive.config import HiveConfig
    from hive.control.admin_verbs import verb_table

    for module, name in [
        (supervisor, "EXTRA_CHILDREN"),
        (daemon, "STARTUP_HOOKS"),
        (daemon, "SHUTDOWN_HOOKS"),
        (admin_socket, "VERBS"),
        (agent_socket, "EXTRA_OPS"),
    ]:
        assert not hasattr(module, name), f"{module.__name__}.{name}"
    unfederated = SimpleNamespace(config=HiveConfig())
    tree = daemon.supervision_tree(unfederated, list)  # type: ignore[arg-type]
    ids = [spec.id for spec in tree]
    assert ids == ["store", "hub", "bus", "stats", "approvals", "attention", "admission"]
    assert all(spec.restart == "permanent" for spec in tree)
    assert "inject_fault" not in verb_table() and "inject_fault" in verb_table(True)
    assert {"version", "send", "restart", "approve", "spawn", "destroy"} <= set(verb_table())
    assert HiveConfig().tree_intensity == 10 and HiveConfig().tree_period == 60.0


def test_a_dead_admission_actor_loses_no_queued_turn(
    make_hive: Callable[..., RunningHive],
) -> None:
    """Its queue dies with it: the restarted one hears again from the agent that waits and
    from the one in a turn (AdmissionRestarted), so the slot and the queue come back."""
    hive = make_hive(ADMISSION_CONFIG, env=FAULTS)
    hive.admin("send", to="holder", body="hold")
    hive.wait_until(lambda: hive.status("holder")["turn_state"] == "waiting_recv", what="hold")
    hive.admin("send", to="waiter", body="queued work")
    hive.wait_until(lambda: hive.status("waiter")["turn_state"] == "queued", what="a queued turn")

    hive.admin("inject_fault", target="admission")
    hive.wait_until(lambda: "restarting admission" in hive.log_tail(200), what="the restart")
    hive.admin("send", to="other", body="queued behind")
    hive.wait_until(
        lambda: "1 turn(s) ahead" in hive.status("other")["queue_reason"],
        what="the restarted queue to hold both, in order",
    )
    hive.admin("send", to="holder", body="release")
    for name in ("waiter", "other"):
        hive.wait_until(lambda n=name: hive.status(n)["last_turn"], what=f"{name}'s turn")
    assert [m["state"] for m in hive.messages("waiter")] == ["delivered"]


ADMISSION_CONFIG = """
[hive]
max_concurrent_turns = 1

[[agent]]
name = "holder"
[[agent.script]]
match = "hold"
do = [{op = "recv", wait = 60}]

[[agent]]
name = "waiter"

[[agent]]
name = "other"
"""


def test_every_actor_of_the_tree_answers_the_watchdog_s_ping() -> None:
    """The daemon pings every actor before it tells systemd all is well: an actor that
    logs Ping as unexpected would cost the hive its watchdog, and a restart loop. The base
    class answers it, before the actor's own messages, and no actor takes that over."""
    import importlib
    import inspect
    import pkgutil
    import threading
    from typing import Any

    import hive.actors as actors_pkg
    from hive.actors.base import Ping, SupervisedActor

    class Busy(SupervisedActor):
        def receive(self, message: Any) -> Any:
            raise AssertionError(f"{message!r} reached receive")

    ref = Busy.start(None)  # type: ignore[arg-type]
    try:
        answered = threading.Event()
        ref.tell(Ping(answered.set))
        assert answered.wait(30)
        assert ref.is_alive()
    finally:
        ref.stop()

    classes = set()
    for info in pkgutil.iter_modules(actors_pkg.__path__):
        module = importlib.import_module(f"hive.actors.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, SupervisedActor) and cls is not SupervisedActor:
                classes.add(cls)
    assert len(classes) >= 10
    overriding = [c.__name__ for c in classes if c.on_receive is not SupervisedActor.on_receive]
    assert not overriding, f"these actors take on_receive over from the base: {overriding}"
