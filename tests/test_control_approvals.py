"""Approvals: the manager asks, the operator decides, approving runs the action exactly once.

Spawn (one-shot, and draft -> commit -> approve), config changes by commit, scheduled
prompts; races between resolvers; refusals; pending approvals across a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hive.client import HiveError
from tests.control_support import CONFIG, as_agent, git, inbox, pending, race
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]


def notices(hive: RunningHive, approval_id: int) -> list[dict[str, Any]]:
    return [m for m in inbox(hive, "manager") if m["meta"].get("approval") == approval_id]


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("request_spawn", {"name": "eve"}),
        ("request_spawn_draft", {"name": "eve"}),
        ("request_spawn_commit", {"name": "eve", "ref": "HEAD"}),
        ("request_apply_commit", {"agent": "worker", "ref": "HEAD"}),
        ("schedule_prompt", {"agent": "worker", "at": "+60", "text": "hi"}),
    ],
)
def test_requests_are_the_managers_only(make_hive: MakeHive, op: str, args: Any) -> None:
    hive = make_hive(CONFIG)
    with pytest.raises(HiveError) as info:
        as_agent(hive, "alice", op, **args)
    assert info.value.code == "manager_only"
    assert pending(hive) == []


def test_one_shot_spawn_waits_for_approval_then_the_agent_runs(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "request_spawn", name="scout", model="claude-opus-4")
    assert request["status"] == "pending" and request["kind"] == "spawn"
    with pytest.raises(HiveError):
        hive.status("scout")  # nothing exists before the operator says so
    [row] = pending(hive)
    assert row["agent"] == "scout" and row["requested_by"] == "manager"
    assert row["details"]["config"]["model"] == "claude-opus-4"

    approved = hive.admin("approve", id=row["id"])
    assert approved["status"] == "approved"
    status = hive.wait_until(lambda: hive.status("scout"), what="scout to start")
    assert status["parent"] == "manager" and status["active_model"] == "claude-opus-4"
    assert (hive.state_dir / "agents" / "scout" / "config" / ".git").is_dir()
    assert status["deployed_sha"]
    [notice] = hive.wait_until(lambda: notices(hive, row["id"]), what="the manager's notice")
    assert "was approved" in notice["body"] and notice["from"] == "system"
    # The new agent takes part like any other.
    sent = hive.admin("send", to="scout", body="hello")
    hive.wait_until(
        lambda: any(t["exit_class"] == "ok" and sent["id"] in t["message_ids"]
                    for t in hive.turns("scout")),
        what="scout's first turn",
    )  # fmt: skip
    # It is part of the hive from now on, across restarts.
    hive.kill()
    hive = hive.restart()
    again = hive.status("scout")
    assert again["deployed_sha"] == status["deployed_sha"]
    assert again["active_model"] == "claude-opus-4"


def test_a_denied_spawn_creates_nothing_and_the_manager_hears_why(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "request_spawn", name="scout")
    denied = hive.admin("deny", id=request["id"], reason="we have enough agents")
    assert denied["status"] == "denied"
    assert denied["resolution"] == {"by": "operator", "reason": "we have enough agents"}
    [notice] = hive.wait_until(lambda: notices(hive, request["id"]), what="the notice")
    assert "denied: we have enough agents" in notice["body"]
    assert "scout" not in [a["name"] for a in hive.admin("list")["agents"]]


def test_the_same_spawn_cannot_be_asked_twice_or_for_an_existing_agent(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    first = as_agent(hive, "manager", "request_spawn", name="scout")
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn", name="scout")
    assert info.value.code == "conflict" and f"#{first['id']}" in info.value.message
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn", name="alice")
    assert info.value.code == "conflict" and "already exists" in info.value.message
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn", name="Bad Name")
    assert info.value.code == "invalid_name"


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_approve_deny_cancel_exactly_one_wins_and_runs_once(
    make_hive: MakeHive, round_: int
) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "request_spawn", name=f"racer{round_}")
    rid = request["id"]
    calls: list[Callable[[], Any]] = []
    for i in range(24):
        if i % 3 == 0:
            calls.append(lambda: hive.admin("approve", id=rid))
        elif i % 3 == 1:
            calls.append(lambda: hive.admin("deny", id=rid, reason="race"))
        else:
            calls.append(lambda: hive.admin("cancel", id=rid))
    results = race(calls)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, HiveError)]
    assert len(winners) == 1, winners
    status = winners[0]["status"]
    assert len(losers) == len(calls) - 1
    assert all(
        e.code == "already_resolved" and f"already resolved as {status}" in e.message
        for e in losers
    )
    db = hive.db()
    [(db_status,)] = db.execute("SELECT status FROM approvals WHERE id = ?", (rid,)).fetchall()
    assert db_status == status
    created = db.execute(
        "SELECT COUNT(*) FROM agents WHERE name = ?", (f"racer{round_}",)
    ).fetchall()
    assert created == [(1 if status == "approved" else 0,)]
    hive.wait_until(lambda: notices(hive, rid), what="the notice")
    assert len(notices(hive, rid)) == 1  # the manager is told once


def test_an_action_that_cannot_run_is_recorded_failed_with_the_reason(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "schedule_prompt", agent="alice", at="+60", text="x")
    # alice goes away meanwhile; the approved prompt then has nobody to go to.
    hive.admin("destroy", names=["alice"])
    result = hive.admin("approve", id=request["id"])
    assert result["status"] == "failed"
    assert result["resolution"]["error"] == "agent 'alice' no longer exists"
    [row] = hive.admin("approvals", status="failed")["approvals"]
    assert row["id"] == request["id"]
    assert hive.admin("scheduled")["scheduled"] == []
    [notice] = hive.wait_until(lambda: notices(hive, request["id"]), what="the notice")
    assert "was approved but failed: agent 'alice' no longer exists" in notice["body"]


def test_the_operator_spawns_directly_but_not_over_a_pending_request(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "request_spawn", name="scout")
    with pytest.raises(HiveError) as info:
        hive.admin("spawn", name="scout")
    assert info.value.code == "conflict" and f"#{request['id']}" in info.value.message
    spawned = hive.admin("spawn", name="direct", model="claude-opus-4", parent="manager")
    assert spawned["agent"] == "direct"
    status = hive.wait_until(lambda: hive.status("direct"), what="direct")
    assert status["active_model"] == "claude-opus-4" and status["parent"] == "manager"


def test_pending_approvals_survive_a_crash(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    a = as_agent(hive, "manager", "request_spawn", name="one")
    b = as_agent(hive, "manager", "schedule_prompt", agent="worker", at="+3600", text="later")
    hive.kill()
    hive = hive.restart()
    assert [r["id"] for r in pending(hive)] == [a["id"], b["id"]]
    hive.admin("approve", id=a["id"])
    hive.wait_until(lambda: hive.status("one"), what="the approved agent")
    # Ids keep growing after a restart: no reuse.
    c = as_agent(hive, "manager", "request_spawn", name="two")
    assert c["id"] > b["id"]


# --- draft -> commit -> approve ---------------------------------------------------------------

PONG_RULE = """
[[script]]
match = "ping"
do = [{op = "reply", body = "pong from the committed config"}]
"""


def test_draft_commit_approve_spawns_that_commit_and_the_agent_runs_a_turn(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    draft = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    repo = Path(draft["config_dir"])
    # The repo lives in the manager's own dir, the one place its sandbox lets it reach.
    assert repo == hive.state_dir.resolve() / "agents" / "manager" / "drafts" / "helper"
    assert (hive.state_dir / "agents" / "helper" / "state").is_dir()
    assert git(repo, "log", "--format=%H").split() == [draft["ref"]]
    assert 'name = "helper"' in (repo / "agent.toml").read_text()
    # Asking again is harmless: the same draft.
    assert as_agent(hive, "manager", "request_spawn_draft", name="helper")["ref"] == draft["ref"]
    [listed] = hive.admin("drafts")["drafts"]
    assert listed["name"] == "helper" and listed["base_sha"] == draft["ref"]
    with pytest.raises(HiveError):
        hive.status("helper")  # a draft has no running agent

    # The manager edits and commits twice; the approval is for the named commit.
    toml = repo / "agent.toml"
    toml.write_text(toml.read_text() + 'model = "claude-haiku-4"\n' + PONG_RULE)
    git(repo, "commit", "-qam", "give helper a pong rule")
    wanted = git(repo, "rev-parse", "HEAD").strip()
    toml.write_text(toml.read_text().replace("pong from", "PING FROM"))
    git(repo, "commit", "-qam", "a later edit that is not submitted")

    request = as_agent(hive, "manager", "request_spawn_commit", name="helper", ref=wanted[:10])
    [row] = pending(hive)
    assert row["id"] == request["id"] and row["kind"] == "spawn_commit"
    assert row["details"]["sha"] == wanted
    diff = row["details"]["diff"]
    assert '+model = "claude-haiku-4"' in diff and '+script[0] = { "match" = "ping"' in diff
    assert "PING FROM" not in diff

    assert hive.admin("approve", id=request["id"])["status"] == "approved"
    status = hive.wait_until(lambda: hive.status("helper"), what="helper to start")
    assert status["deployed_sha"] == wanted and status["active_model"] == "claude-haiku-4"
    assert hive.admin("drafts")["drafts"] == []
    # The approved repo became the new agent's own.
    config = hive.state_dir / "agents" / "helper" / "config"
    assert git(config, "rev-parse", "HEAD").strip() != wanted  # the later commit came along
    assert wanted in git(config, "log", "--format=%H").split() and not repo.exists()
    sent = hive.admin("send", to="helper", body="ping")
    reply = hive.wait_until(
        lambda: [m for m in inbox(hive, "operator") if m["from"] == "helper"],
        what="helper's reply from its first turn",
    )
    assert reply[0]["body"] == "pong from the committed config"
    [turn] = hive.turns("helper")
    assert turn["message_ids"] == [sent["id"]] and turn["model"] == "claude-haiku-4"


def test_spawn_commit_refuses_what_it_cannot_use(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn_commit", name="ghost", ref="HEAD")
    assert info.value.code == "not_found" and "request_spawn_draft" in info.value.message
    draft = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    repo = Path(draft["config_dir"])
    for ref, code in (("nope", "unknown_ref"), ("--exec=x", "bad_request")):
        with pytest.raises(HiveError) as info:
            as_agent(hive, "manager", "request_spawn_commit", name="helper", ref=ref)
        assert info.value.code == code
    (repo / "agent.toml").write_text('name = "someone-else"\n')
    git(repo, "commit", "-qam", "wrong name")
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    assert info.value.code == "bad_config" and "someone-else" in info.value.message
    (repo / "agent.toml").write_text('name = "helper"\nruntime = "nonsense"\n')
    git(repo, "commit", "-qam", "bad runtime")
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    assert info.value.code == "bad_config" and "runtime" in info.value.message
    assert pending(hive) == []


def test_apply_commit_marks_needs_update_then_rebuilds_the_agent(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    spawn = as_agent(hive, "manager", "request_spawn", name="scout")
    hive.admin("approve", id=spawn["id"])
    first = hive.wait_until(lambda: hive.status("scout"), what="scout")
    repo = hive.state_dir / "agents" / "scout" / "config"
    toml = repo / "agent.toml"
    toml.write_text(toml.read_text() + 'model = "claude-opus-4"\n' + PONG_RULE)
    git(repo, "commit", "-qam", "opus and a pong rule")
    sha = git(repo, "rev-parse", "HEAD").strip()

    request = as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    hive.wait_until(lambda: hive.status("scout")["needs_update"], what="needs_update")
    [row] = pending(hive)
    assert row["details"]["base_sha"] == first["deployed_sha"]
    assert '+model = "claude-opus-4"' in row["details"]["diff"]

    hive.admin("approve", id=request["id"])
    status = hive.wait_until(
        lambda: (s := hive.status("scout"))["deployed_sha"] == sha and s, what="the new config"
    )
    assert status["needs_update"] is False and status["active_model"] == "claude-opus-4"
    hive.admin("send", to="scout", body="ping")
    hive.wait_until(
        lambda: [m for m in inbox(hive, "operator") if m["from"] == "scout"],
        what="scout answering with its new script",
    )


def test_a_denied_config_change_clears_needs_update(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="scout")
    repo = hive.state_dir / "agents" / "scout" / "config"
    (repo / "agent.toml").write_text('name = "scout"\nmodel = "x"\n')
    git(repo, "commit", "-qam", "x")
    request = as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    hive.wait_until(lambda: hive.status("scout")["needs_update"], what="needs_update")
    hive.admin("deny", id=request["id"])
    hive.wait_until(lambda: not hive.status("scout")["needs_update"], what="needs_update cleared")
    assert hive.status("scout")["active_model"] != "x"


def test_apply_commit_needs_a_config_repo(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_apply_commit", agent="worker", ref="HEAD")
    assert info.value.code == "no_config_repo" and "hive.toml" in info.value.message
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_apply_commit", agent="nobody", ref="HEAD")
    assert info.value.code == "unknown_agent"


# --- scheduled prompts ------------------------------------------------------------------------


def prompts_to(hive: RunningHive, agent: str) -> list[dict[str, Any]]:
    return [m for m in inbox(hive, agent) if "scheduled_prompt" in m["meta"]]


def test_an_approved_prompt_arrives_at_its_time(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    at = time.time() + 2.0
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"
    request = as_agent(hive, "manager", "schedule_prompt", agent="worker", at=iso, text="ping")
    assert pending(hive)[0]["details"]["at"] == pytest.approx(at, abs=0.001)
    assert prompts_to(hive, "worker") == []
    hive.admin("approve", id=request["id"])
    [sched] = hive.admin("scheduled")["scheduled"]
    assert sched["agent"] == "worker" and sched["text"] == "ping"
    [msg] = hive.wait_until(lambda: prompts_to(hive, "worker"), what="the prompt", timeout=30)
    assert msg["ts"] >= at and msg["from"] == "system" and msg["body"] == "ping"
    assert hive.admin("scheduled")["scheduled"] == []
    # It starts a turn like any message.
    hive.wait_until(
        lambda: any(msg["id"] in t["message_ids"] and t["exit_class"] == "ok"
                    for t in hive.turns("worker")),
        what="the worker's turn with the prompt",
    )  # fmt: skip


def test_a_scheduled_prompt_is_delivered_once_after_a_restart(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "schedule_prompt", agent="alice", at="+2", text="wake")
    hive.admin("approve", id=request["id"])
    hive.kill()
    due = hive.db().execute("SELECT at FROM scheduled_prompts").fetchall()[0][0]
    hive = hive.restart()
    [msg] = hive.wait_until(lambda: prompts_to(hive, "alice"), what="the prompt", timeout=30)
    assert msg["ts"] >= due
    hive.terminate()
    hive = hive.restart()  # already delivered: not again
    assert len(prompts_to(hive, "alice")) == 1
    [(state,)] = hive.db().execute("SELECT state FROM scheduled_prompts").fetchall()
    assert state == "delivered"


def test_an_approved_prompt_can_be_cancelled_before_its_time(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    request = as_agent(hive, "manager", "schedule_prompt", agent="alice", at="+3600", text="x")
    hive.admin("approve", id=request["id"])
    cancelled = hive.admin("cancel", id=request["id"])
    assert cancelled["state"] == "cancelled"
    assert hive.admin("scheduled")["scheduled"] == []
    with pytest.raises(HiveError) as info:
        hive.admin("cancel", id=request["id"])
    assert info.value.code == "already_resolved"


def test_schedule_prompt_refuses_bad_times(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    for at, words in (
        ("2026-12-01T09:00:00", "no time zone"),
        ("tomorrow", "not an ISO 8601 time"),
        ("+99999999", "more than a year ahead"),
    ):
        with pytest.raises(HiveError) as info:
            as_agent(hive, "manager", "schedule_prompt", agent="alice", at=at, text="x")
        assert info.value.code == "bad_request" and words in info.value.message
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "schedule_prompt", agent="nobody", at="+5", text="x")
    assert info.value.code == "conflict" and "no agent named 'nobody'" in info.value.message


def test_a_kept_repo_gets_the_new_config_on_top_when_the_name_is_spawned_again(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="scout")
    first = hive.wait_until(lambda: hive.status("scout"), what="scout")["deployed_sha"]
    hive.admin("destroy", names=["scout"])
    hive.admin("spawn", name="scout", model="claude-opus-4")
    second = hive.wait_until(
        lambda: (s := hive.status("scout"))["deployed_sha"] != first and s, what="scout again"
    )
    repo = hive.state_dir / "agents" / "scout" / "config"
    assert git(repo, "log", "--format=%H").split() == [second["deployed_sha"], first]
    assert 'model = "claude-opus-4"' in git(repo, "show", "HEAD:agent.toml")
    assert git(repo, "status", "--porcelain") == ""


def test_hive_runs_nothing_the_config_repo_asks_it_to(make_hive: MakeHive, tmp_path: Path) -> None:
    """The repo is the manager's: its git config, attributes and hooks must not make the
    supervisor run code (filters, textconv, external diff, hooks)."""
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="scout")
    hive.wait_until(lambda: hive.status("scout"), what="scout")
    repo = hive.state_dir / "agents" / "scout" / "config"
    (repo / "agent.toml").write_text('name = "scout"\nmodel = "m2"\n')
    git(repo, "commit", "-qam", "m2")
    marker = tmp_path / "ran"
    evil = f"sh -c 'touch {marker}; cat'"
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    for key, value in (
        ("filter.evil.clean", evil),
        ("filter.evil.smudge", evil),
        ("diff.evil.textconv", evil),
        ("diff.evil.command", evil),
        ("diff.external", evil),
        ("core.hooksPath", str(repo / "hooks")),
        ("core.fsmonitor", evil),
    ):
        git(repo, "config", key, value)
    (repo / "hooks").mkdir()
    for hook in ("reference-transaction", "post-commit", "pre-commit", "post-index-change"):
        path = repo / "hooks" / hook
        path.write_text(f"#!/bin/sh\ntouch {marker}\n")
        path.chmod(0o755)
    request = as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    assert '+model = "m2"' in pending(hive)[0]["details"]["diff"]
    hive.admin("approve", id=request["id"])
    hive.wait_until(lambda: hive.status("scout")["active_model"] == "m2", what="the change")
    hive.admin("destroy", names=["scout"])
    hive.admin("spawn", name="scout", model="m3")  # commits into the kept repo
    hive.wait_until(lambda: hive.status("scout")["active_model"] == "m3", what="scout again")
    assert not marker.exists()
