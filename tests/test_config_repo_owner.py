"""Root never runs git in a repo an agent can write, and the operator approves what hive
parsed, not what the repo's git shows.

Real supervisor, real bwrap agents with their own uids. Each rigged repo is planted as its
agent would leave it (the agent owns every file), with commands that append the uid they
ran as to a marker file in a directory anyone may write: the marker must never say 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from hive.client import HiveError
from tests.control_support import CONFIG, as_agent, hivectl, pending
from tests.hive_harness import RunningHive
from tests.ui_harness import make_dashboard

__all__ = ["make_dashboard"]  # the fixture, imported for pytest

BWRAP_HIVE = """
[hive]
# The test venv's Python lives under /root, which the agents' uids cannot enter.
agent_python = "/usr/bin/python3"
backoff_initial = 0.2

[[agent]]
name = "manager"
sandbox = "bwrap"
"""


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A hive root the agents' own uids can traverse (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hive-config-repo-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bwrap_hive(open_root: Path) -> Iterator[RunningHive]:
    if os.geteuid() != 0:
        pytest.fail("these tests prove what root does: run them as root")
    hive = RunningHive.start(open_root / "hive", BWRAP_HIVE)
    try:
        yield hive
    finally:
        hive.terminate()


@pytest.fixture
def marker(open_root: Path) -> Path:
    """Where a planted command writes the uid it ran as (any uid may write here)."""
    box = open_root / "markers"
    box.mkdir()
    os.chmod(box, 0o1777)
    return box / "ran-as"


def assert_never_ran_as_root(marker: Path) -> None:
    if not marker.exists():
        return
    uids = marker.read_text().split()
    assert marker.stat().st_uid != 0 and "0" not in uids, f"ran as uid(s) {uids}"


def sandboxed_uid(hive: RunningHive, name: str) -> int:
    """The host uid of ``name``'s sandbox, once a turn has prepared it."""
    hive.admin("send", to=name, body="wake up")
    root = hive.state_dir / "agents" / name
    return int(
        hive.wait_until(lambda: (uid := root.lstat().st_uid) != 0 and uid, what=f"{name}'s own uid")
    )


def git_as_root(repo: Path, *args: str) -> str:
    """The test's own git: nothing the repo configures may run here either."""
    safe = ["-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null"]
    safe += ["-c", "core.fsmonitor=false", "-c", "protocol.allow=never"]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "agent",
        "GIT_AUTHOR_EMAIL": "agent@hive",
        "GIT_COMMITTER_NAME": "agent",
        "GIT_COMMITTER_EMAIL": "agent@hive",
    }
    done = subprocess.run(
        ["git", *safe, "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def commit(repo: Path, toml: str) -> str:
    if not (repo / ".git").exists():
        git_as_root(repo, "init", "-q", "-b", "main")
    (repo / "agent.toml").write_text(toml)
    git_as_root(repo, "add", "agent.toml")
    git_as_root(repo, "commit", "-qm", "edit")
    return git_as_root(repo, "rev-parse", "HEAD").strip()


def give_to_agent(repo: Path, uid: int) -> None:
    """Every file of the repo is the agent's, as after it wrote them from its sandbox."""
    for dirpath, dirnames, filenames in os.walk(repo):
        for entry in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
            os.lchown(entry, uid, uid)


def rig_promisor(repo: Path, marker: Path, uid: int) -> None:
    """HEAD's tree goes missing and a promisor remote 'fetches' it with a shell command:
    any git that needs the tree runs ``uploadpack``."""
    tree = git_as_root(repo, "rev-parse", "HEAD^{tree}").strip()
    (repo / ".git" / "objects" / tree[:2] / tree[2:]).unlink()
    for key, value in (
        ("core.repositoryformatversion", "1"),
        ("extensions.partialclone", "origin"),
        ("remote.origin.url", str(repo)),
        ("remote.origin.promisor", "true"),
        ("remote.origin.uploadpack", f"sh -c 'id -u >> {marker}'; false"),
    ):
        git_as_root(repo, "config", key, value)
    give_to_agent(repo, uid)


def rig_hooks(repo: Path, marker: Path, uid: int) -> None:
    """Hooks, fsmonitor, filters (from .git/info/attributes), external diff, textconv."""
    evil = f"sh -c 'id -u >> {marker}; cat'"
    for key, value in (
        ("core.hooksPath", str(repo / ".git" / "evil-hooks")),
        ("core.fsmonitor", evil),
        ("filter.evil.clean", evil),
        ("filter.evil.smudge", evil),
        ("filter.evil.process", evil),
        ("diff.evil.textconv", evil),
        ("diff.evil.command", evil),
        ("diff.external", evil),
        ("core.sshCommand", evil),
        ("core.pager", evil),
    ):
        git_as_root(repo, "config", key, value)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil\n")
    for hooks in (repo / ".git" / "hooks", repo / ".git" / "evil-hooks"):
        hooks.mkdir(exist_ok=True)
        for hook in ("reference-transaction", "post-index-change", "pre-commit", "post-commit"):
            path = hooks / hook
            path.write_text(f"#!/bin/sh\nid -u >> {marker}\n")
            path.chmod(0o755)
    give_to_agent(repo, uid)


def spawn_bwrap(hive: RunningHive, name: str, **config: Any) -> int:
    hive.admin("spawn", name=name, config={"sandbox": "bwrap", **config})
    hive.wait_until(lambda: hive.status(name), what=f"{name} to start")
    return sandboxed_uid(hive, name)


# --- item 19: root runs no agent-controlled git config -----------------------------------


def test_apply_commit_of_the_managers_own_rigged_repo_runs_nothing_as_root(
    bwrap_hive: RunningHive, marker: Path
) -> None:
    hive = bwrap_hive
    uid = sandboxed_uid(hive, "manager")
    repo = hive.state_dir / "agents" / "manager" / "config"
    repo.mkdir(exist_ok=True)
    commit(repo, 'name = "manager"\nmodel = "rigged"\n')
    rig_promisor(repo, marker, uid)
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_apply_commit", agent="manager", ref="HEAD")
    assert info.value.code == "bad_config"  # the tree is missing: nothing to read
    assert_never_ran_as_root(marker)
    assert pending(hive) == []


def test_apply_commit_of_another_agents_rigged_repo_runs_nothing_as_root(
    bwrap_hive: RunningHive, marker: Path
) -> None:
    hive = bwrap_hive
    uid = spawn_bwrap(hive, "bob")
    repo = hive.state_dir / "agents" / "bob" / "config"
    commit(repo, 'name = "bob"\nmodel = "rigged"\n')
    rig_promisor(repo, marker, uid)
    with pytest.raises(HiveError):
        as_agent(hive, "manager", "request_apply_commit", agent="bob", ref="HEAD")
    assert_never_ran_as_root(marker)


def test_destroy_and_spawn_of_a_kept_name_runs_nothing_as_root(
    bwrap_hive: RunningHive, marker: Path
) -> None:
    hive = bwrap_hive
    uid = spawn_bwrap(hive, "bob")
    repo = hive.state_dir / "agents" / "bob" / "config"
    commit(repo, 'name = "bob"\nmodel = "rigged"\n')
    rig_promisor(repo, marker, uid)
    hive.admin("destroy", names=["bob"])
    hive.admin("spawn", name="bob", model="again", config={"sandbox": "bwrap"})
    hive.wait_until(lambda: hive.status("bob")["active_model"] == "again", what="bob again")
    assert_never_ran_as_root(marker)


def test_hooks_fsmonitor_and_filters_of_a_rigged_repo_never_run_as_root(
    bwrap_hive: RunningHive, marker: Path
) -> None:
    """Every git command that commits, reads and stages, through a whole apply and a
    destroy + spawn, in a repo rigged with every hook and helper git knows; the commits
    still land, made by the agent's uid."""
    hive = bwrap_hive
    uid = spawn_bwrap(hive, "bob")
    repo = hive.state_dir / "agents" / "bob" / "config"
    sha = commit(repo, 'name = "bob"\nsandbox = "bwrap"\nmodel = "m2"\n')
    rig_hooks(repo, marker, uid)
    request = as_agent(hive, "manager", "request_apply_commit", agent="bob", ref="HEAD")
    assert '+model = "m2"' in pending(hive)[0]["details"]["diff"]
    hive.admin("approve", id=request["id"])
    hive.wait_until(lambda: hive.status("bob")["deployed_sha"] == sha, what="the change")
    hive.admin("destroy", names=["bob"])
    hive.admin("spawn", name="bob", model="m3", config={"sandbox": "bwrap"})
    status = hive.wait_until(
        lambda: (s := hive.status("bob"))["deployed_sha"] not in ("", sha) and s,
        what="bob again, from a new commit in the kept repo",
    )
    assert git_as_root(repo, "log", "--format=%H").split()[1] == sha
    assert status["deployed_sha"] == git_as_root(repo, "rev-parse", "HEAD").strip()
    assert 'model = "m3"' in (repo / "agent.toml").read_text()
    assert (repo / "agent.toml").stat().st_uid == uid  # written by the owner, not root
    assert_never_ran_as_root(marker)


# --- item 20: the operator sees what takes effect ----------------------------------------


def test_attributes_cannot_hide_a_change_from_the_approval(make_dashboard: Any) -> None:
    dash = make_dashboard(CONFIG)
    hive = dash.hive
    hive.admin("spawn", name="scout")
    hive.wait_until(lambda: hive.status("scout"), what="scout")
    repo = hive.state_dir / "agents" / "scout" / "config"
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("agent.toml -diff\n")
    (repo / ".gitattributes").write_text("* -diff\n")
    commit(repo, 'name = "scout"\nsandbox = "bwrap"\nnetwork = false\nenv = { SECRET = "x" }\n')
    request = as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    expected = ['-sandbox = "process"', '+sandbox = "bwrap"', "+network = false"]
    expected += ['+env.SECRET = "x"']
    [row] = pending(hive)
    shown = row["details"]["diff"]
    assert "Binary" not in shown and all(line in shown for line in expected), shown
    assert row["details"]["config_before"]["sandbox"] == "process"
    text = hivectl(hive, "pending", json_out=False)
    assert text.returncode == 0, text.stderr
    assert f"#{request['id']} apply_commit of 'scout'" in text.stdout
    assert all(line in text.stdout for line in expected), text.stdout
    # the dashboard's approval card shows the same rendering
    [card] = dash.hive.wait_until(
        lambda: dash.ok("GET", "/api/approvals")["approvals"], what="the approval on the API"
    )
    assert card["details"]["diff"] == shown


def test_hivectl_pending_shows_the_sandbox_and_env_of_a_spawn_request(make_hive: Any) -> None:
    hive = make_hive(CONFIG)
    config = {"sandbox": "bwrap", "env": {"REGION": "eu\x1b]0;title\x07"}}
    request = as_agent(hive, "manager", "request_spawn", name="helper", config=config)
    text = hivectl(hive, "pending", json_out=False)
    assert text.returncode == 0, text.stderr
    assert f"#{request['id']} spawn of 'helper': what takes effect" in text.stdout
    assert '+sandbox = "bwrap"' in text.stdout
    # hive's own rendering: the value JSON-escaped, no raw escape reaches the terminal
    assert '+env.REGION = "eu\\u001b]0;title\\u0007"' in text.stdout
    assert "\x1b" not in text.stdout


@pytest.mark.parametrize("key", ["LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "NODE_OPTIONS"])
def test_a_loader_hook_in_a_requested_env_is_refused_by_name(make_hive: Any, key: str) -> None:
    hive = make_hive(CONFIG)
    with pytest.raises(HiveError) as info:
        config = {"env": {key: "/tmp/x.so"}}
        as_agent(hive, "manager", "request_spawn", name="helper", config=config)
    assert info.value.code == "bad_config" and key in info.value.message
    hive.admin("spawn", name="scout")
    hive.wait_until(lambda: hive.status("scout"), what="scout")
    repo = hive.state_dir / "agents" / "scout" / "config"
    commit(repo, f'name = "scout"\nenv = {{ {key} = "/tmp/x.so" }}\n')
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    assert info.value.code == "bad_config" and key in info.value.message
    assert pending(hive) == []


def test_a_stored_agent_with_a_now_refused_env_starts_without_it(make_hive: Any) -> None:
    """A row stored before the env rules must not keep the hive from starting."""
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="scout", config={"env": {"REGION": "eu"}})
    hive.wait_until(lambda: hive.status("scout"), what="scout")
    hive.terminate()
    db = apsw.Connection(str(hive.state_dir / "hive.db"))
    [(raw,)] = db.execute("SELECT config FROM agents WHERE name = 'scout'").fetchall()
    config = json.loads(raw)
    config["env"]["LD_PRELOAD"] = "/tmp/x.so"
    with db:
        db.execute("UPDATE agents SET config = ? WHERE name = 'scout'", (json.dumps(config),))
    db.close()
    hive.restart()
    hive.wait_until(lambda: hive.status("scout"), what="scout after the restart")
    assert "stored agent scout: env LD_PRELOAD dropped" in hive.log_tail(200)
