"""hivectl, the real command (a subprocess), against a real supervisor: every verb, tables
for people, --json for scripts, and a non-zero exit with the daemon's message on error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.control_support import CONFIG, as_agent, ask, git, hivectl, inbox, wait_pending
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]


@pytest.fixture
def hive(make_hive: MakeHive) -> RunningHive:
    return make_hive(CONFIG)


def test_version_list_and_status(hive: RunningHive) -> None:
    assert hivectl(hive, "version").json()["protocol"] == 1
    human = hivectl(hive, "version", json_out=False)
    assert human.returncode == 0 and human.stdout.startswith("hive ")

    listed = hivectl(hive, "list").json()
    assert [a["name"] for a in listed["agents"]] == ["alice", "manager", "worker"]
    table = hivectl(hive, "list", json_out=False).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "MODEL", "INBOX", "LAST", "TURN", "STATUS"]
    assert [line.split()[0] for line in table[1:]] == ["alice", "manager", "worker"]
    assert table[1].split()[1:3] == ["idle", "claude-sonnet-4-5"]

    status = hivectl(hive, "status", "worker").json()
    assert status["name"] == "worker" and status["running"] is True
    text = hivectl(hive, "status", "worker", json_out=False).stdout
    assert "needs_update:" in text and "active_model:" in text


def test_errors_exit_non_zero_with_the_daemons_message(hive: RunningHive) -> None:
    missing = hivectl(hive, "status", "ghost")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "hivectl: no agent named 'ghost' [unknown_agent]"
    assert missing.stdout == ""
    bad = hivectl(hive, "approve", "999")
    assert bad.returncode == 1 and "no approval or question #999" in bad.stderr
    unscoped = hivectl(hive, "cancel")
    assert unscoped.returncode == 1 and "[empty_scope]" in unscoped.stderr
    usage = hivectl(hive, "pause")  # argparse: names are required
    assert usage.returncode == 2 and "NAME" in usage.stderr


def test_unreachable_daemon_exits_3(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(tmp_path / "no.sock"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "cannot connect" in done.stderr and "is hive-supervisor running?" in done.stderr


def test_the_socket_comes_from_the_environment(hive: RunningHive) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hive.cli.hivectl", "--json", "version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HIVE_ADMIN_SOCKET": str(hive.admin_path)},
    )
    assert done.returncode == 0, done.stderr


def test_pause_resume_stop_start_restart_reset(hive: RunningHive) -> None:
    result = hivectl(hive, "pause", "alice", "worker").json()
    assert set(result["agents"]) == {"alice", "worker"}
    assert hive.status("alice")["paused"] and hive.status("worker")["paused"]
    assert hivectl(hive, "resume", "alice", json_out=False).stdout.strip() == "alice: resumed"
    assert not hive.status("alice")["paused"]
    stop = hivectl(hive, "stop", "alice", json_out=False)
    assert stop.returncode == 0 and stop.stdout.strip() == "alice: stopped"
    assert hive.status("alice")["stopped"]
    assert hivectl(hive, "start", "alice").json()["agents"]["alice"]["stopped"] is False
    assert hivectl(hive, "stop", "--hard", "alice").returncode == 0
    assert hivectl(hive, "restart", "alice").json()["agents"]["alice"]["stopped"] is False
    assert hivectl(hive, "reset", "worker").returncode == 0
    failed = hivectl(hive, "stop", "alice", "ghost", json_out=False)
    assert failed.returncode == 1 and "no agent named 'ghost'" in failed.stderr


def test_kick_send_cancel_and_the_history_verbs(hive: RunningHive) -> None:
    hivectl(hive, "pause", "alice")
    sent = hivectl(hive, "send", "alice", "hello there").json()
    from_stdin = hivectl(hive, "send", "alice", "-", stdin="from stdin\n").json()
    bodies = [m["body"] for m in inbox(hive, "alice")]
    assert bodies == ["hello there", "from stdin\n"]
    assert hivectl(hive, "messages", "alice").json()[0]["id"] == from_stdin["id"]
    assert sent["id"] < from_stdin["id"]
    kicked = hivectl(hive, "kick", "worker", "--note", "wake up", json_out=False)
    assert kicked.returncode == 0 and kicked.stdout.strip() == "worker: kicked"
    turns = hive.wait_until(lambda: hivectl(hive, "turns", "worker").json(), what="a turn")
    assert turns[0]["kick_note"] == "wake up"
    cancelled = hivectl(hive, "cancel", "alice", json_out=False)
    assert cancelled.stdout.strip() == "alice: no turn running"
    assert isinstance(hivectl(hive, "events").json(), list)


def test_model_show_and_set(hive: RunningHive) -> None:
    shown = hivectl(hive, "model", "worker", json_out=False)
    assert shown.stdout.strip() == "worker: claude-sonnet-4-5"
    hivectl(hive, "model", "worker", "claude-opus-4")
    assert hive.status("worker")["active_model"] == "claude-opus-4"
    bad = hivectl(hive, "model", "worker", "no spaces allowed")
    assert bad.returncode == 1 and "invalid model name" in bad.stderr


def test_pending_answer_approve_deny_and_cancel_by_id(hive: RunningHive) -> None:
    assert hivectl(hive, "pending", json_out=False).stdout.strip() == "nothing pending"
    asked = ask(hive, "alice", question="Which port should I use?", ttl_seconds=600)
    spawn = as_agent(hive, "manager", "request_spawn", name="scout")
    other = as_agent(hive, "manager", "request_spawn", name="scout2")
    third = as_agent(hive, "manager", "request_spawn", name="scout3")
    rows = wait_pending(hive, 4)
    [question] = [r for r in rows if r["kind"] == "question"]
    table = hivectl(hive, "pending", json_out=False).stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "AGENT", "ASKED", "TTL", "WHAT"]
    question_line = next(line for line in table if "Which port" in line)
    assert question_line.split()[1:3] == ["question", "alice"]
    by_alice = hivectl(hive, "pending", "--agent", "alice").json()["pending"]
    assert [r["id"] for r in by_alice] == [question["id"]]

    answered = hivectl(hive, "answer", str(question["id"]), "8080", json_out=False)
    assert answered.stdout.strip() == f"question #{question['id']}: answered"
    assert asked.result()["answer"] == "8080"
    approved = hivectl(hive, "approve", str(spawn["id"]), json_out=False)
    assert approved.stdout.strip() == f"spawn approval #{spawn['id']}: approved"
    denied = hivectl(hive, "deny", str(other["id"]), "--reason", "one is enough").json()
    assert denied["status"] == "denied" and denied["resolution"]["reason"] == "one is enough"
    cancelled = hivectl(hive, "cancel", "--id", str(third["id"])).json()
    assert cancelled["status"] == "cancelled"
    again = hivectl(hive, "approve", str(other["id"]))
    assert again.returncode == 1 and "already resolved as denied" in again.stderr
    history = hivectl(hive, "approvals", "--status", "denied").json()["approvals"]
    assert [r["id"] for r in history] == [other["id"]]
    hive.wait_until(lambda: hive.status("scout"), what="scout")


def test_spawn_destroy_drafts_scheduled_and_logs(hive: RunningHive) -> None:
    spawned = hivectl(hive, "spawn", "helper", "--model", "claude-haiku-4", json_out=False)
    assert spawned.returncode == 0 and spawned.stdout.strip() == "spawned helper"
    assert hive.wait_until(lambda: hive.status("helper"))["active_model"] == "claude-haiku-4"
    destroyed = hivectl(hive, "destroy", "helper", json_out=False)
    assert "destroyed, state kept in" in destroyed.stdout
    assert (hive.state_dir / "agents" / "helper").is_dir()

    draft = as_agent(hive, "manager", "request_spawn_draft", name="sketch")
    assert hivectl(hive, "drafts").json()["drafts"][0]["name"] == "sketch"
    assert "sketch" in hivectl(hive, "drafts", json_out=False).stdout
    git(Path(draft["config_dir"]), "log")  # a real repo
    request = as_agent(
        hive, "manager", "schedule_prompt", agent="alice", at="+3600", text="check in"
    )
    hivectl(hive, "approve", str(request["id"]))
    scheduled = hivectl(hive, "scheduled", json_out=False).stdout
    assert "check in" in scheduled and "alice" in scheduled

    log = hive.state_dir / "agents" / "worker" / "agent.log"
    log.write_text("first\nsecond\nthird\n")
    assert hivectl(hive, "logs", "worker", "-n", "2", json_out=False).stdout == "second\nthird\n"
    assert hivectl(hive, "logs", "worker").json()["lines"] == ["first", "second", "third"]


def test_subscribe_prints_the_snapshot_then_each_change(hive: RunningHive) -> None:
    argv = [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(hive.admin_path)]
    proc = subprocess.Popen(
        [*argv, "subscribe", "--kinds", "agent", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("snapshot at seq ") and "3 agent" in first
        hive.admin("pause", names=["alice"])
        second = proc.stdout.readline()
        assert " agent alice paused " in second
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stats_summarises_an_agents_turns(hive: RunningHive) -> None:
    hive.admin("send", to="worker", body="ping")
    hive.admin("send", to="worker", body="ping again")
    summary = hive.wait_until(
        lambda: (s := hivectl(hive, "stats", "worker").json()["summary"])["turns"] >= 1 and s,
        what="the Stats actor to record the worker's turns",
    )
    assert summary["exits"]["failure"] == 0 and summary["exits"]["ok"] == summary["turns"]
    assert summary["sent"].get("operator", 0) >= 1  # its pong went to the operator
    assert summary["duration_p50"] is not None
    text = hivectl(hive, "stats", "worker", json_out=False).stdout
    assert text.splitlines()[0] == "worker, last 3600 s"
    assert text.splitlines()[1].split() == ["STAT", "VALUE"]
    assert any(line.startswith("turns ") for line in text.splitlines())
    bad = hivectl(hive, "stats", "Not A Name")
    assert bad.returncode == 1 and "invalid agent name" in bad.stderr
