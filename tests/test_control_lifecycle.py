"""Lifecycle and per-agent settings: pause/resume, start/stop (graceful or hard)/restart,
model, destroy, logs, and the control plane's policy refusals."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from hive.client import HiveError
from tests.control_support import CONFIG, as_agent, inbox
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

LIFECYCLE_VERBS = ["pause", "resume", "start", "stop", "restart", "reset", "kick", "cancel"]


@pytest.mark.parametrize("verb", [*LIFECYCLE_VERBS, "destroy"])
@pytest.mark.parametrize("scope", [None, [], ""])
def test_an_empty_scope_is_refused_never_everything(
    make_hive: MakeHive, verb: str, scope: Any
) -> None:
    hive = make_hive(CONFIG)
    args = {} if scope is None else {"names": scope}
    with pytest.raises(HiveError) as info:
        hive.admin(verb, **args)
    assert info.value.code == "empty_scope"
    assert "never means every agent" in info.value.message
    rows = hive.admin("list")["agents"]
    assert all(r["running"] and not r["paused"] and not r["stopped"] for r in rows)


def test_pause_is_committed_before_it_is_acknowledged_and_survives_a_crash(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    result = hive.admin("pause", names=["worker", "alice"])
    assert set(result["agents"]) == {"worker", "alice"}
    hive.kill()  # no chance to flush anything after the acknowledgement
    hive = hive.restart()
    assert hive.status("worker")["paused"] and hive.status("alice")["paused"]
    assert not hive.status("worker")["running"]
    # Mail waits while paused, and is served on resume.
    hive.admin("send", to="worker", body="ping")
    hive.wait_until(lambda: hive.status("worker")["inbox_depth"] == 1, what="the mail to wait")
    assert hive.turns("worker") == []
    hive.admin("pause", names=["worker"])  # idempotent
    hive.admin("resume", names=["worker"])
    hive.wait_until(
        lambda: [m for m in inbox(hive, "operator") if m["from"] == "worker"], what="pong"
    )


def start_a_held_turn(hive: RunningHive) -> dict[str, Any]:
    """The worker takes a turn that stays open (in recv) until its next message."""
    hive.admin("send", to="worker", body="hold on")
    return hive.wait_until(
        lambda: (s := hive.status("worker"))["turn_state"] == "waiting_recv" and s,
        what="the worker's turn to wait in recv",
    )


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except Exception as exc:
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_stop_lets_the_running_turn_finish_then_starts_no_other(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    held = start_a_held_turn(hive)
    stopping, box = in_thread(lambda: hive.admin("stop", names=["worker"]))
    hive.wait_until(lambda: hive.status("worker")["stopped"], what="stopped to be set")
    assert stopping.is_alive()  # the answer waits for the turn
    assert hive.status("worker")["turn_id"] == held["turn_id"]
    hive.admin("send", to="worker", body="release")  # the turn's recv gets it, the turn ends
    stopping.join(30)
    assert box["result"]["agents"]["worker"] == {
        "agent": "worker",
        "stopped": True,
        "turn_ended": held["turn_id"],
    }
    [turn] = hive.turns("worker")
    assert turn["exit_class"] == "ok"  # finished, not cancelled
    status = hive.status("worker")
    assert status["stopped"] and not status["running"] and status["turn_state"] == "idle"
    # A stopped agent keeps its mail and takes no turn until started.
    hive.admin("send", to="worker", body="ping")
    hive.wait_until(lambda: hive.status("worker")["inbox_depth"] == 1, what="the mail to wait")
    assert len(hive.turns("worker")) == 1
    hive.terminate()
    hive = hive.restart()
    assert hive.status("worker")["stopped"]  # persisted
    assert hive.admin("start", names=["worker"])["agents"]["worker"]["stopped"] is False
    hive.wait_until(
        lambda: any(m["body"] == "pong from worker" for m in inbox(hive, "operator")),
        what="the worker to serve its mail once started",
    )


def test_stop_hard_cancels_the_running_turn(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    held = start_a_held_turn(hive)
    result = hive.admin("stop", names=["worker"], hard=True)
    assert result["agents"]["worker"]["turn_ended"] == held["turn_id"]
    [turn] = hive.turns("worker")
    assert turn["exit_class"] == "cancelled"
    status = hive.status("worker")
    assert status["stopped"] and status["inbox_depth"] == 1  # "hold on" is kept


def test_restart_cancels_the_turn_clears_failed_and_runs_again(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    held = start_a_held_turn(hive)
    result = hive.admin("restart", names=["worker"])
    assert result["agents"]["worker"]["turn_ended"] == held["turn_id"]
    # The cancelled turn's message is served again by a new turn.
    turns = hive.wait_until(
        lambda: (t := hive.turns("worker")) and len(t) == 2 and t, what="a second turn"
    )
    assert turns[1]["exit_class"] == "cancelled" and turns[0]["message_ids"] == held_ids(hive)
    hive.admin("send", to="worker", body="release")
    hive.wait_until(lambda: hive.status("worker")["turn_state"] == "idle", what="idle")
    hive.admin("stop", names=["worker"])
    hive.admin("restart", names=["worker"])  # also starts a stopped agent
    assert not hive.status("worker")["stopped"]


def test_restart_on_the_admin_socket_starts_a_turn_at_once(make_hive: MakeHive) -> None:
    """restart means the same for hivectl as for the dashboard: the agent starts again
    now (a turn carrying the restart's kick), not when its next message arrives."""
    hive = make_hive(CONFIG)
    assert hive.turns("alice") == []
    hive.admin("restart", names=["alice"])
    turns = hive.wait_until(lambda: hive.turns("alice"), what="the restart's turn")
    assert turns[0]["kick_note"] == "restarted by the operator"


def held_ids(hive: RunningHive) -> list[int]:
    return [m["id"] for m in inbox(hive, "worker") if m["body"] == "hold on"]


def test_lifecycle_verbs_on_unknown_agents_change_nothing(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    for verb in ("stop", "start", "restart"):
        with pytest.raises(HiveError) as info:
            hive.admin(verb, names=["worker", "ghost"])
        assert info.value.code == "unknown_agent" and "ghost" in info.value.message
    assert not hive.status("worker")["stopped"]


def test_model_is_persisted_used_by_the_next_turn_and_survives_restart(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    assert hive.admin("model", names=["worker"])["agents"]["worker"]["model"] == (
        "claude-sonnet-4-5"
    )
    result = hive.admin("model", names=["worker"], model="claude-opus-4")
    model_file = hive.state_dir / "agents" / "worker" / "state" / "hive-model"
    assert result["agents"]["worker"]["file"] == str(model_file.resolve())
    assert model_file.read_text() == "claude-opus-4\n"
    assert hive.status("worker")["active_model"] == "claude-opus-4"
    hive.admin("send", to="worker", body="ping")
    [turn] = hive.wait_until(lambda: hive.turns("worker"), what="a turn")
    assert turn["model"] == "claude-opus-4"
    hive.kill()
    hive = hive.restart()
    assert hive.status("worker")["active_model"] == "claude-opus-4"
    hive.admin("model", names=["worker"], model="default")
    assert hive.status("worker")["active_model"] == "claude-sonnet-4-5"
    assert not model_file.exists()
    with pytest.raises(HiveError) as info:
        hive.admin("model", names=["worker"], model="bad model; rm -rf /")
    assert info.value.code == "bad_request"


def test_destroy_keeps_state_unless_purged(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="temp")
    hive.admin("spawn", name="gone")
    hive.wait_until(lambda: hive.status("gone"), what="gone")
    kept = hive.admin("destroy", names=["temp"])["agents"]["temp"]
    assert kept["destroyed"] and not kept["purged"]
    assert (hive.state_dir / "agents" / "temp" / "config" / ".git").is_dir()
    purged = hive.admin("destroy", names=["gone"], purge=True)["agents"]["gone"]
    assert purged["purged"] and not (hive.state_dir / "agents" / "gone").exists()
    names = [a["name"] for a in hive.admin("list")["agents"]]
    assert "temp" not in names and "gone" not in names
    with pytest.raises(HiveError) as info:
        hive.admin("send", to="temp", body="hello?")
    assert info.value.code == "unknown_agent"
    # The kept name can be spawned again, and starts clean.
    hive.admin("spawn", name="temp")
    assert hive.wait_until(lambda: hive.status("temp"), what="temp again")["running"]


def test_destroy_discards_a_draft(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    as_agent(hive, "manager", "request_spawn_draft", name="sketch")
    result = hive.admin("destroy", names=["sketch"], purge=True)
    assert result["agents"]["sketch"]["draft_discarded"]
    assert hive.admin("drafts")["drafts"] == []
    assert not (hive.state_dir / "agents" / "sketch").exists()


def test_destroying_an_asker_withdraws_its_questions(make_hive: MakeHive) -> None:
    from tests.control_support import ask, pending, wait_pending

    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="Before I go?")
    wait_pending(hive)
    hive.admin("destroy", names=["alice"])
    assert asked.result()["status"] == "cancelled"
    assert pending(hive) == []


def test_logs_show_the_end_of_the_agents_log(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    log = hive.state_dir / "agents" / "worker" / "agent.log"
    assert hive.admin("logs", name="worker")["lines"] == []
    log.write_text("".join(f"line {i}\n" for i in range(500)))
    result = hive.admin("logs", name="worker", lines=3)
    assert result["lines"] == ["line 497", "line 498", "line 499"]
    assert result["path"] == str(log.resolve())
    with pytest.raises(HiveError) as info:
        hive.admin("logs", name="nobody")
    assert info.value.code == "unknown_agent"


def test_an_agent_outside_its_allowed_recipients_is_refused_and_told_why(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(
        CONFIG
        + """
[[agent]]
name = "quiet"
allowed_recipients = ["manager"]
"""
    )
    with pytest.raises(HiveError) as info:
        as_agent(hive, "quiet", "send", to="alice", body="hi")
    assert info.value.code == "not_allowed" and "allowed_recipients" in info.value.message
    assert as_agent(hive, "quiet", "send", to="manager", body="hi")["id"]
    # The manager may always send anywhere, including to quiet.
    assert as_agent(hive, "manager", "send", to="quiet", body="hello")["id"]


def test_a_full_inbox_refuses_agents_clearly_and_keeps_what_it_accepted(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(
        CONFIG
        + """
[[agent]]
name = "tiny"
inbox_cap = 3
"""
    )
    hive.admin("pause", names=["tiny"])
    accepted, refused = [], []
    with hive.agent("alice") as alice:
        for i in range(6):
            try:
                accepted.append(alice.call("send", to="tiny", body=f"flood {i}")["id"])
            except HiveError as exc:
                refused.append(exc)
    assert len(accepted) == 3 and len(refused) == 3
    assert all(e.code == "inbox_full" and "inbox_cap of 3" in e.message for e in refused)
    stored = [m["id"] for m in inbox(hive, "tiny")]
    assert stored == accepted  # nothing accepted is lost, nothing refused is stored
    # The operator is not capped; once tiny has worked through its mail, agents may send again.
    hive.admin("send", to="tiny", body="from the operator")
    hive.admin("resume", names=["tiny"])
    hive.wait_until(lambda: hive.status("tiny")["inbox_depth"] == 0, what="tiny to drain")
    hive.wait_until(
        lambda: as_agent(hive, "alice", "send", to="tiny", body="again")["id"],
        what="sending to be accepted again",
    )


def stored_kick(hive: RunningHive, agent: str) -> Any:
    rows = hive.db().execute("SELECT kick_note FROM agents WHERE name = ?", (agent,)).fetchall()
    return rows[0][0]


def test_a_kick_is_stored_before_it_is_acknowledged_and_survives_a_crash(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["worker"])  # the kick waits: no turn may serve it yet
    hive.admin("kick", names=["worker"], note="look at the queue")
    assert stored_kick(hive, "worker") == "look at the queue"
    hive.kill()  # no chance to write anything after the acknowledgement
    hive = hive.restart()
    assert hive.turns("worker") == []
    hive.admin("resume", names=["worker"])
    served = hive.wait_until(
        lambda: [t for t in hive.turns("worker") if t["exit_class"] == "ok"],
        what="the stored kick to be served after the restart",
    )
    assert [t["kick_note"] for t in served] == ["look at the queue"]
    # Served by a clean turn: no longer outstanding, and another restart does not repeat it.
    hive.wait_until(lambda: stored_kick(hive, "worker") is None, what="the kick to be cleared")
    hive = hive.restart()
    hive.admin("send", to="worker", body="ping")
    hive.wait_until(lambda: len(hive.turns("worker")) == 2, what="the next turn")
    assert [t["kick_note"] for t in hive.turns("worker")] == [None, "look at the queue"]


def test_a_kick_through_the_agent_tool_is_stored_before_its_reply(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["worker"])
    as_agent(hive, "manager", "kick_agent", name="worker", note="from the manager")
    assert stored_kick(hive, "worker") == "from the manager"


def test_each_operation_and_each_way_a_turn_ends_has_its_own_handler() -> None:
    """Lifecycle operations are message types of their own (no Control(op: str)), and
    _turn_ended hands each exit class to a handler of its own."""
    from hive.actors import agent
    from hive.runtimes.base import ExitClass

    assert not hasattr(agent, "Control")
    assert agent.Stop(hard=True).hard and agent.Restart().reply is None
    for kind in (agent.Pause, agent.Resume, agent.CancelTurn, agent.Reset, agent.Start):
        assert kind().reply is None
    assert set(agent._END_HANDLERS) == set(ExitClass)
