"""Persistent session mode end to end: a claude agent with ``persistent = true`` plays its
turns in one long-lived ``claude --input-format stream-json`` process, started by the real
supervisor's turn runner (hive.io.sessions); the REAL claude CLI talks to the fake API."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.claude_hive import (
    BOB_ANSWERS,
    ClaudeHive,
    claude_agent,
    group_members,
    hive_toml,
)
from tests.fake_anthropic import (
    FakeAnthropic,
    Hang,
    Text,
    ToolUse,
    prompt_too_long,
    server_error,
)
from tests.hive_harness import RunningHive


@pytest.fixture
def start(api: FakeAnthropic, make_hive: Callable[..., RunningHive]) -> Callable[..., ClaudeHive]:
    def start(*agents: str, **settings: object) -> ClaudeHive:
        settings.setdefault("backoff_initial", 0.05)
        return ClaudeHive(make_hive(hive_toml(*agents, **settings), env=api.env()), api)

    return start


def play(hive: ClaudeHive, body: str, n: int) -> dict[str, Any]:
    """Send alice a message and wait for her n-th turn to end; return that turn."""
    hive.admin("send", to="alice", body=body)
    return hive.wait_turns("alice", n)[n - 1]


def test_several_turns_run_in_one_process(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", persistent=True), BOB_ANSWERS)
    first = play(hive, "question one", 1)
    # The second turn calls send through the session's hive-mcp; bob's answer is the third.
    api.script(ToolUse("mcp__hive__send", {"to": "bob", "body": "hi bob"}), Text("sent"))
    play(hive, "question two: greet bob", 2)
    turns = hive.wait_turns("alice", 3)

    assert [t["exit_class"] for t in turns] == ["ok", "ok", "ok"]
    processes = [hive.of(int(t["id"]), "process")[0] for t in turns]
    assert len({p["pid"] for p in processes}) == 1, processes
    assert [p["reused"] for p in processes] == [False, True, True]
    assert all(p["persistent"] for p in processes)
    assert group_members(processes[0]["pid"])  # still there, waiting for the next turn
    [ping] = [m for m in hive.messages("bob") if m["from"] == "alice"]
    assert ping["body"] == "hi bob"
    # One conversation: the last request carries every turn so far.
    history = hive.requests_of("alice")[-1].all_text()
    for text in ("question one", "question two: greet bob", "pong: hi bob"):
        assert text in history
    assert first["exit_code"] == 0


def test_a_model_change_starts_a_new_process_that_resumes_the_session(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", model="claude-first", persistent=True))
    first = play(hive, "remember the word zebra", 1)
    old_pid = hive.pid_of(int(first["id"]))

    hive.admin("model", names=["alice"], model="claude-second", force=True)
    second = play(hive, "which word?", 2)

    new = hive.of(int(second["id"]), "process")[0]
    assert new["pid"] != old_pid and new["reused"] is False
    assert [r.model for r in hive.requests_of("alice")] == ["claude-first", "claude-second"]
    assert "remember the word zebra" in hive.requests_of("alice")[1].all_text()
    # The old process was closed (EOF on stdin), not left behind.
    hive.wait_until(lambda: not group_members(old_pid), what="the old session to exit")
    log = (hive.agent_dir("alice") / "agent.log").read_text()
    assert f"closing session process {old_pid}: the model" in log


def test_the_process_dying_mid_turn_is_a_crash_and_the_retry_starts_a_new_one(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    api.script(Hang(Text("never seen")))
    hive = start(claude_agent("alice", persistent=True))
    sent = hive.admin("send", to="alice", body="work on this")
    api.wait_for_requests(1)
    pid = hive.pid_of(hive.running_turn("alice"))

    os.kill(pid, signal.SIGKILL)
    crashed, retried = hive.wait_turns("alice", 2)
    assert crashed["exit_class"] == "crash" and "killed by signal 9" in crashed["detail"]
    assert retried["exit_class"] == "ok" and retried["message_ids"] == [sent["id"]]
    new = hive.of(int(retried["id"]), "process")[0]
    assert new["pid"] != pid and new["reused"] is False
    assert hive.status("alice")["crashes_in_window"] == 1
    api.release()


def test_a_failed_turn_gets_a_fresh_process(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    api.script(server_error())
    hive = start(claude_agent("alice", persistent=True))
    hive.admin("send", to="alice", body="hello")
    crashed, retried = hive.wait_turns("alice", 2)

    # The CLI reports the 500 and would go on; hive starts the retry in a new process.
    assert crashed["exit_class"] == "crash" and "500" in crashed["detail"]
    assert retried["exit_class"] == "ok"
    old, new = (hive.pid_of(int(t["id"])) for t in (crashed, retried))
    assert old != new
    hive.wait_until(lambda: not group_members(old), what="the failed session to exit")


def test_cancel_kills_the_session_and_the_next_turn_resumes_in_a_new_one(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", persistent=True))
    play(hive, "first, a quick one", 1)
    api.script(Hang(Text("never seen")))
    sent = hive.admin("send", to="alice", body="now a long one")
    api.wait_for_requests(2)
    turn_id = hive.running_turn("alice")
    pid = hive.pid_of(turn_id)

    hive.admin("cancel", names=["alice"])
    cancelled = hive.wait_turns("alice", 2)[1]
    assert cancelled["exit_class"] == "cancelled"
    hive.wait_until(lambda: not group_members(pid), what="the session's process group to end")
    assert {m["id"]: m["state"] for m in hive.messages("alice")}[sent["id"]] == "pending"
    api.release()

    third = play(hive, "go on", 3)
    assert third["exit_class"] == "ok" and third["message_ids"][0] == sent["id"]
    new = hive.of(int(third["id"]), "process")[0]
    assert new["pid"] != pid and new["reused"] is False
    assert "first, a quick one" in hive.requests_of("alice")[-1].all_text()


def test_an_idle_session_is_closed_and_the_next_turn_starts_one(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", persistent=True), session_idle_seconds=1.0)
    first = play(hive, "hello", 1)
    pid = hive.pid_of(int(first["id"]))

    hive.wait_until(lambda: not group_members(pid), what="the idle session to be closed")
    log = (hive.agent_dir("alice") / "agent.log").read_text()
    assert f"closing session process {pid}: idle" in log
    second = play(hive, "hello again", 2)
    assert second["exit_class"] == "ok"
    new = hive.of(int(second["id"]), "process")[0]
    assert new["pid"] != pid and new["reused"] is False
    assert "hello" in hive.requests_of("alice")[-1].all_text()


def test_a_context_overflow_retries_in_a_new_process_with_a_fresh_session(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    api.script(Text("noted"), prompt_too_long())
    hive = start(claude_agent("alice", persistent=True))
    play(hive, "remember the word zebra", 1)
    hive.admin("send", to="alice", body="a very long message")
    overflow, retry = hive.wait_turns("alice", 3)[1:]

    assert overflow["exit_class"] == "compact_retry", overflow
    assert retry["exit_class"] == "ok" and retry["message_ids"] == overflow["message_ids"]
    assert hive.pid_of(int(retry["id"])) != hive.pid_of(int(overflow["id"]))
    request = hive.requests_of("alice")[-1]
    assert "[context reset]" in request.all_text() and "a very long message" in request.all_text()
    assert "zebra" not in request.all_text()


def test_stopping_the_supervisor_leaves_no_session_process(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", persistent=True))
    first = play(hive, "hello", 1)
    pid = hive.pid_of(int(first["id"]))
    assert group_members(pid)

    assert hive.terminate() == 0
    assert not group_members(pid)


def test_whether_a_turn_needs_a_fresh_process_is_the_agent_s_decision() -> None:
    """The Agent says why a turn must not reuse the session process (its last turn failed,
    or the context is being reset); the session runner carries that out and keeps only the
    facts it sees (the process exited, what it was started with changed)."""
    import inspect

    from hive.actors.agent import AgentActor
    from hive.io import sessions

    decided = inspect.getsource(AgentActor._why_fresh_process)
    assert "the last turn did not end ok" in decided and "compact" in decided
    runner = inspect.getsource(sessions.Sessions) + inspect.getsource(sessions._why_new_process)
    assert "ExitClass.OK" not in runner and "turn.compact" not in runner
    assert "fresh_process" in inspect.signature(sessions.Sessions.play).parameters


def test_when_a_session_idles_out_is_the_agent_s_decision() -> None:
    """The Agent arms a cancellable timer when a turn ends and closes its idle session
    process through the runner; the runner keeps no clock of its own."""
    import inspect

    from hive.actors.agent import AgentActor, SessionIdle
    from hive.io import sessions

    assert "idle_seconds" not in inspect.signature(sessions.Sessions).parameters
    assert not hasattr(sessions.Sessions, "_close_when_idle")
    assert "session_idle_seconds" in inspect.getsource(AgentActor._arm_idle_timer)
    assert "close_session" in inspect.getsource(AgentActor)
    assert SessionIdle(None).timer is None


def test_leaving_persistent_mode_is_the_agent_s_decision() -> None:
    """The Agent, which knows its config, says when a leftover session process must be
    closed before a turn; the runner closes one only when told."""
    import inspect

    from hive.actors.agent import AgentActor
    from hive.io.turns import TurnRunner

    assert "persistent" in inspect.getsource(AgentActor._why_close_session)
    assert "close_session" in inspect.signature(TurnRunner.start).parameters
    assert "close_session" in inspect.getsource(TurnRunner._play)


def session_of(hive: ClaudeHive, turn: dict[str, Any]) -> str:
    """The claude session a turn played in, as the CLI itself reported it (init)."""
    [init] = hive.wait_until(lambda: hive.of(int(turn["id"]), "init")[:1], what="init")
    return str(init["session_id"])


def test_persistent_is_the_default_and_a_retired_session_resumes_the_same_conversation(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice"), session_idle_seconds=1.0)  # no `persistent` given
    first = play(hive, "remember the word zebra", 1)
    process = hive.of(int(first["id"]), "process")[0]
    assert process["persistent"] is True
    pid = int(process["pid"])
    session = session_of(hive, first)
    assert (hive.agent_dir("alice") / "state" / "claude-session").read_text().strip() == session

    hive.wait_until(lambda: not group_members(pid), what="the idle session to be retired")
    second = play(hive, "which word?", 2)
    assert second["exit_class"] == "ok"
    new = hive.of(int(second["id"]), "process")[0]
    assert new["pid"] != pid and new["reused"] is False
    # The same claude session, resumed: the model is sent the earlier conversation.
    assert session_of(hive, second) == session
    resumed = hive.requests_of("alice")[-1]
    assert "remember the word zebra" in resumed.all_text() and "which word?" in resumed.all_text()


def test_a_process_per_turn_stays_a_per_agent_choice(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(claude_agent("alice", persistent=False))
    first = play(hive, "remember the word zebra", 1)
    process = hive.of(int(first["id"]), "process")[0]
    assert process["persistent"] is False
    # What hive adds before the CLI starts is measured on every per-turn start (the bench
    # bench_claude_turns reports it): its sandbox prepare, its command, and all of it.
    assert process["prepare_ms"] >= 0 and 0 <= process["build_ms"] <= process["hive_ms"]
    hive.wait_until(lambda: not group_members(int(process["pid"])), what="the turn to exit")
    second = play(hive, "which word?", 2)
    assert hive.of(int(second["id"]), "process")[0]["pid"] != process["pid"]
    assert "remember the word zebra" in hive.requests_of("alice")[-1].all_text()


def test_under_a_memory_budget_idle_sessions_are_retired_least_recently_used_first(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    """300 MiB holds one resident claude session (216-300 MiB measured) and not two: each
    turn of another agent retires the session used longest ago, which resumes its own
    conversation when its agent's next turn comes."""
    names = ["a", "b", "c"]
    hive = start(*(claude_agent(n) for n in names), memory_budget_mb=300)
    for i, name in enumerate([*names, "a"]):
        hive.admin("send", to=name, body=f"message {i} for {name}")
        hive.wait_turns(name, 2 if i == 3 else 1)

    retired = [line.split("retiring ")[1].split("'")[0]
               for line in hive.log_tail(2000).splitlines()
               if "admission: retiring" in line]  # fmt: skip
    assert retired == ["a", "b", "c"], hive.log_tail(80)
    log = (hive.agent_dir("a") / "agent.log").read_text()
    assert "MiB are needed for a queued turn (least recently used)" in log
    assert all(t["exit_class"] == "ok" for n in names for t in hive.ended_turns(n))
    assert all(m["state"] == "delivered" for n in names for m in hive.messages(n))
    assert "message 0 for a" in hive.requests_of("a")[-1].all_text()  # resumed


def test_a_waiting_agent_s_idle_session_is_retired_too_when_it_holds_the_room(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    """Every resident session may belong to an agent whose own turn waits further back:
    those are retired as well (never the first in line's own), rather than the first in
    line running beside them past the budget (the 100-agent bench once peaked at 3.8x)."""
    hive = start(claude_agent("a"), claude_agent("b"), memory_budget_mb=300)
    hive.admin("send", to="a", body="first for a")
    hive.wait_turns("a", 1)
    hive.admin("send", to="b", body="first for b")
    # b's turn is asked for (queued or running) before a's second: a's is behind it.
    hive.wait_until(
        lambda: hive.status("b")["turn_state"] != "idle" or hive.ended_turns("b"),
        what="b's turn asked",
    )
    hive.admin("send", to="a", body="second for a")  # queued behind b, its session resident
    hive.wait_turns("b", 1)
    hive.wait_turns("a", 2)

    log = hive.log_tail(400).splitlines()
    retired = [line.split("retiring ")[1].split("'")[0] for line in log
               if "admission: retiring" in line]  # fmt: skip
    assert retired == ["a", "b"], "\n".join(log[-60:])
    assert "first for a" in hive.requests_of("a")[-1].all_text()  # resumed after retiring
