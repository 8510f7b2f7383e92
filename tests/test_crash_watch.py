"""Crash watch: a crashed turn is retried with backoff; a crash loop ends in `failed`,
the manager is told, and nothing restarts the agent until the operator acts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.hive_harness import RunningHive

BASE = """
[hive]
restart_intensity = {intensity}
restart_period = 600
backoff_initial = {backoff}
backoff_max = {backoff_max}

[[agent]]
name = "manager"

[[agent]]
name = "flaky"
[[agent.script]]
match = "*"
do = [{{op = "crash", code = 3, message = "first try fails", times = 1}},
      {{op = "reply", body = "handled {{body}}"}}]

[[agent]]
name = "doomed"
[[agent.script]]
match = "*"
do = [{{op = "crash", code = 7, message = "always fails"}}]
"""


def config(intensity: int = 2, backoff: float = 0.05, backoff_max: float = 5) -> str:
    return BASE.format(intensity=intensity, backoff=backoff, backoff_max=backoff_max)


def manager_events(hive: RunningHive) -> list[str]:
    return [
        m["body"]
        for m in hive.messages("manager")
        if m["from"] == "system" and m["to"] == "manager"
    ]


def test_crashed_turn_is_retried_with_the_same_message(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(config())
    sent = hive.admin("send", to="flaky", body="job")
    hive.wait_until(
        lambda: any(m["body"] == "handled job" for m in hive.messages("operator")),
        what="flaky to handle the job on its second try",
    )
    turns = hive.wait_until(
        lambda: (
            [t for t in hive.turns("flaky") if t["ended_at"]]
            if len(hive.turns("flaky")) == 2 and all(t["ended_at"] for t in hive.turns("flaky"))
            else None
        ),
        what="both turns to end",
    )
    first, second = sorted(turns, key=lambda t: t["id"])
    assert first["exit_class"] == "crash" and first["exit_code"] == 3
    assert "first try fails" in first["detail"]
    assert second["exit_class"] == "ok"
    assert first["message_ids"] == second["message_ids"] == [sent["id"]]
    status = hive.status("flaky")
    assert status["failed"] is False and status["last_turn"]["exit_class"] == "ok"
    events = hive.wait_until(lambda: manager_events(hive), what="the manager to hear of it")
    assert any("'flaky' crashed" in e and "restart 1/2" in e for e in events)


def test_crash_loop_marks_the_agent_failed_without_a_restart_storm(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(config(intensity=2))
    hive.admin("send", to="doomed", body="job")
    status = hive.wait_until(
        lambda: (s := hive.status("doomed"))["failed"] and s, what="doomed to be marked failed"
    )
    assert "3 crashes" in status["failed_reason"]
    assert status["running"] is False and status["inbox_depth"] == 1  # the job is kept
    # R = 2 restarts allowed, so exactly 3 turns ran: no storm.
    assert [t["exit_class"] for t in hive.turns("doomed")] == ["crash"] * 3
    events = hive.wait_until(
        lambda: [e for e in manager_events(hive) if "FAILED" in e], what="the failure notice"
    )
    assert len(events) == 1 and "'doomed' FAILED" in events[0]

    # More mail does not wake a failed agent ...
    hive.admin("send", to="doomed", body="another job")
    hive.admin("kick", names=["doomed"])
    status = hive.status("doomed")
    assert status["failed"] is True and status["inbox_depth"] == 2
    assert len(hive.turns("doomed")) == 3
    # ... the operator does.
    hive.admin("reset", names=["doomed"])
    hive.wait_until(lambda: len(hive.turns("doomed")) >= 4, what="a turn after the reset")


@pytest.mark.parametrize("intensity", [1, 4])
def test_restart_intensity_is_configurable(
    make_hive: Callable[..., RunningHive], intensity: int
) -> None:
    hive = make_hive(config(intensity=intensity))
    hive.admin("send", to="doomed", body="job")
    hive.wait_until(lambda: hive.status("doomed")["failed"], what="doomed to fail")
    assert len(hive.turns("doomed")) == intensity + 1


def test_backoff_is_configurable(make_hive: Callable[..., RunningHive]) -> None:
    hive = make_hive(config(intensity=5, backoff=30, backoff_max=120))
    hive.admin("send", to="doomed", body="job")
    status = hive.wait_until(
        lambda: (s := hive.status("doomed"))["retry_at"] and s, what="the first backoff"
    )
    waited = status["retry_at"] - status["last_turn"]["ended_at"]
    # The first retry waits backoff_initial; here 30 s, so no second turn has started.
    assert 29 <= waited <= 31
    assert len(hive.turns("doomed")) == 1


RECV_CONFIG = """
[hive]
backoff_initial = 0.05

[[agent]]
name = "manager"

[[agent]]
name = "taker"
[[agent.script]]
match = "start"
do = [{op = "recv", wait = 60, times = 1}, {op = "crash", code = 9, times = 1}]
[[agent.script]]
match = "payload"
do = [{op = "reply", body = "got {body}"}]
"""


def test_messages_taken_by_recv_in_a_crashed_turn_are_given_again(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(RECV_CONFIG)
    start = hive.admin("send", to="taker", body="start")["id"]
    hive.wait_until(
        lambda: hive.status("taker")["turn_state"] == "waiting_recv", what="the recv to wait"
    )
    payload = hive.admin("send", to="taker", body="payload")["id"]
    turns = hive.wait_until(
        lambda: (t := hive.turns("taker")) and len(t) == 2 and t[0]["exit_class"] and t,
        what="the crashed turn and its retry",
    )
    retry, crashed = turns  # newest first
    assert crashed["exit_class"] == "crash" and crashed["message_ids"] == [start]
    # The payload went to the crashed turn through recv, so it came back for the retry.
    assert retry["exit_class"] == "ok" and retry["message_ids"] == [start, payload]
    states = {m["id"]: (m["state"], m["turn_id"]) for m in hive.messages("taker")}
    assert states[payload] == ("delivered", retry["id"])
    answers = [m["body"] for m in hive.messages("operator")]
    assert answers.count("got payload") == 2  # at-least-once: seen by both turns


EXITS = """
[hive]
rate_limit_backoff = 0.05

[[agent]]
name = "manager"

[[agent]]
name = "moody"
[[agent.script]]
match = "login"
do = [{op = "exit", class = "needs_login", detail = "401: not logged in", times = 1},
      {op = "reply", body = "done after the login"}]
[[agent.script]]
match = "busy"
do = [{op = "exit", class = "rate_limited", detail = "429: slow down", times = 1},
      {op = "reply", body = "done after the rate limit"}]
[[agent.script]]
match = "long"
do = [{op = "exit", class = "compact_retry", detail = "prompt is too long", times = 1},
      {op = "reply", body = "done after compacting"}]
"""


def test_every_state_change_an_operator_should_see_leaves_an_event(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(EXITS)

    def kinds() -> list[str]:
        return [e["kind"] for e in reversed(hive.admin("events", agent="moody")["events"])]

    def replied(body: str) -> bool:
        return any(m["body"] == body for m in hive.messages("operator"))

    hive.admin("send", to="moody", body="busy")
    hive.wait_until(lambda: replied("done after the rate limit"), what="the retry after a 429")
    hive.admin("send", to="moody", body="long")
    hive.wait_until(lambda: replied("done after compacting"), what="the compacted retry")
    hive.admin("send", to="moody", body="login")
    hive.wait_until(lambda: hive.status("moody")["needs_login"], what="the 401 to park it")
    hive.admin("reset", names=["moody"])  # the kept message runs again, and works
    hive.wait_until(lambda: replied("done after the login"), what="the turn after the reset")
    hive.admin("pause", names=["moody"])
    hive.admin("kick", names=["moody"], note="wake")
    hive.admin("resume", names=["moody"])
    hive.wait_until(
        lambda: any(t["kick_note"] == "wake" and t["ended_at"] for t in hive.turns("moody")),
        what="the kicked turn to end",
    )
    assert kinds() == [
        "rate_limited", "compact_retry", "needs_login", "reset", "paused", "kicked", "resumed",
    ]  # fmt: skip
    events = {e["kind"]: e for e in hive.admin("events", agent="moody")["events"]}
    assert events["needs_login"]["data"]["detail"] == "401: not logged in"
    assert events["rate_limited"]["data"]["detail"] == "429: slow down"
    assert events["rate_limited"]["data"]["retry_in"] == 0.05
    assert events["compact_retry"]["data"]["attempt"] == 1
    assert events["kicked"]["data"]["note"] == "wake"
