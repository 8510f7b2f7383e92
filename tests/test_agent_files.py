"""Every file operation the root supervisor makes inside an agent's directory survives the
agent's links and swaps: a planted link never makes root write, chown or read a host file,
and an agent-written file is never read whole past its cap (issue 9, items 7, 8, 9, 21)."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from hive import logtail, safefs
from hive.client import HiveError
from hive.config import HiveConfig
from hive.process import AgentPaths
from hive.sandboxes import BwrapSandbox
from hive.sandboxes.uids import give_to
from tests.control_support import as_agent, git
from tests.hive_harness import RunningHive
from tests.sandbox_env import HiveLayout, agent, make_layout

MakeHive = Callable[..., RunningHive]
SWAPS = 20_000  # bound on every swapper thread below
MAX_CONFIG_BYTES = 256 * 1024  # hive.control.gitrepo's cap on a committed agent.toml
SPARSE_BYTES = 2 << 30  # a sparse file: no disk used

CONFIG = """
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""


def host_file(tmp_path: Path, text: str = "host secret\n") -> Path:
    """A file of the host's (not the agent's), outside every agent dir."""
    victim = tmp_path / "host-file"
    victim.write_text(text)
    return victim


class Swapper:
    """Stands in for an agent that keeps swapping ``place`` between a real directory and a
    link to ``target`` while the supervisor works on it (at most SWAPS times)."""

    def __init__(self, place: Path, target: Path) -> None:
        self.place, self.target = place, target
        self.aside = place.with_name(place.name + ".real")
        self.place.mkdir(exist_ok=True)
        self.stop = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and self.swaps < SWAPS:
            try:
                os.rename(self.place, self.aside)
                os.symlink(self.target, self.place)
                os.unlink(self.place)
                os.rename(self.aside, self.place)
            except OSError:
                pass
            self.swaps += 1

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        if self.place.is_symlink():
            self.place.unlink()
        if self.aside.exists() and not self.place.exists():
            os.rename(self.aside, self.place)


# --- item 7: root's writes ---------------------------------------------------------------------


def test_setting_a_model_never_writes_through_the_agents_links(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    hive = make_hive(CONFIG)
    state = hive.state_dir / "agents" / "bob" / "state"
    victim = host_file(tmp_path)
    # Both the file and the temporary name the old code wrote first.
    for name in ("hive-model", "hive-model.tmp"):
        (state / name).symlink_to(victim)
    hive.admin("model", name="bob", model="claude-opus-4")
    assert victim.read_text() == "host secret\n"
    assert (state / "hive-model").read_text() == "claude-opus-4\n"
    assert not (state / "hive-model").is_symlink()
    # "default" removes the file: the link, never what it points at.
    (state / "hive-model").unlink()
    (state / "hive-model").symlink_to(victim)
    hive.admin("model", name="bob", model="default")
    assert victim.read_text() == "host secret\n" and not (state / "hive-model").exists()


def test_setting_a_model_refuses_a_linked_state_dir_even_while_it_is_swapped(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    hive = make_hive(CONFIG)
    state = hive.state_dir / "agents" / "bob" / "state"
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    state.rename(state.with_name("state.old"))
    state.symlink_to(host_dir)
    with pytest.raises(HiveError) as info:
        hive.admin("model", name="bob", model="claude-opus-4")
    assert info.value.code == "unsafe_path" and "not written" in info.value.message
    state.unlink()
    state.with_name("state.old").rename(state)

    with Swapper(state, host_dir):
        for _ in range(30):
            try:
                hive.admin("model", name="bob", model="claude-opus-4")
            except HiveError as exc:
                assert exc.code == "unsafe_path"
    assert list(host_dir.iterdir()) == []


def test_spawning_a_kept_name_again_never_writes_through_its_old_config_links(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    hive = make_hive(CONFIG)
    hive.admin("spawn", name="scout")
    first = hive.wait_until(lambda: hive.status("scout"), what="scout")["deployed_sha"]
    hive.admin("destroy", names=["scout"])
    # What a destroyed agent left behind: its agent.toml now points at a host file.
    repo = hive.state_dir / "agents" / "scout" / "config"
    victim = host_file(tmp_path)
    (repo / "agent.toml").unlink()
    (repo / "agent.toml").symlink_to(victim)
    hive.admin("spawn", name="scout", model="claude-opus-4")
    hive.wait_until(
        lambda: (s := hive.status("scout"))["deployed_sha"] != first and s, what="scout again"
    )
    assert victim.read_text() == "host secret\n"
    assert not (repo / "agent.toml").is_symlink()
    assert 'model = "claude-opus-4"' in (repo / "agent.toml").read_text()


def test_the_agents_directories_are_made_without_following_links(tmp_path: Path) -> None:
    from hive.runtimes.claude import ClaudeRuntime

    paths = AgentPaths.for_agent("bob", tmp_path / "hive", tmp_path / "run")
    paths.ensure()
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    paths.state.rmdir()
    paths.state.symlink_to(host_dir)
    with pytest.raises(OSError) as info:
        paths.ensure()
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    with pytest.raises(OSError):
        ClaudeRuntime().login_spec(HiveConfig(), agent("bob"), paths, "setup-token")
    assert list(host_dir.iterdir()) == []


def test_the_log_is_never_appended_to_a_fifo(tmp_path: Path) -> None:
    """A FIFO in agent.log's place: opening it to write would block the supervisor until a
    reader comes (forever, on the trio thread), or feed the agent's reader."""
    root = tmp_path / "agent"
    root.mkdir()
    os.mkfifo(root / "agent.log")
    reader = os.open(root / "agent.log", os.O_RDONLY | os.O_NONBLOCK)  # the agent listens
    try:
        with pytest.raises(OSError) as info:
            safefs.open_append(root, "agent.log")
        assert info.value.errno == errno.EINVAL
        assert os.read(reader, 100) == b""
    finally:
        os.close(reader)


# --- item 8: the chown walk --------------------------------------------------------------------


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


def test_the_chown_walk_never_leaves_the_agent_dir_while_the_agent_swaps_links(
    layout: HiveLayout,
) -> None:
    sandbox = BwrapSandbox(as_agent_uid=True)
    # Root-only host files, in a directory the swapper keeps linking into the agent's state.
    host_dir = layout.base / "host-only"
    host_dir.mkdir(mode=0o700)
    for i in range(300):
        f = host_dir / f"secret-{i}"
        f.write_text("root only")
        os.chmod(f, 0o600)
    (layout.bob.state / "sub").mkdir()
    for i in range(300):  # the same names, so a path-based walk finds them either way
        (layout.bob.state / "sub" / f"secret-{i}").write_text("the agent's own")
    sandbox.prepare(agent("bob"), layout.bob)
    uid = sandbox.agent_uid(layout.bob)
    failures: list[OSError] = []
    with Swapper(layout.bob.state / "sub", host_dir) as swapper:
        while swapper.thread.is_alive() and swapper.swaps < SWAPS:
            try:
                sandbox.prepare(agent("bob"), layout.bob)  # re-owns state/ every time
            except OSError as exc:
                failures.append(exc)
    chowned = [p.name for p in host_dir.iterdir() if p.lstat().st_uid != 0]
    assert chowned == [], f"{len(chowned)} host files given to the agent"
    assert host_dir.lstat().st_uid == 0
    assert failures == []  # a swap makes a step skip, never the walk fail
    # Once the agent stops, everything of its own is its own.
    sandbox.prepare(agent("bob"), layout.bob)
    assert all(p.lstat().st_uid == uid for p in (layout.bob.state / "sub").iterdir())


def test_the_chown_walk_leaves_hard_links_and_link_targets_alone(layout: HiveLayout) -> None:
    victim = layout.base / "host-file"
    victim.write_text("root only")
    os.chmod(victim, 0o600)
    os.link(victim, layout.bob.work / "hardlink")  # root made it; an agent cannot
    (layout.bob.work / "symlink").symlink_to(victim)
    uid = 0x6000_0000 + 0x10000 * 7
    give_to(layout.bob.root, uid, uid)
    assert victim.lstat().st_uid == 0
    assert (layout.bob.work / "symlink").lstat().st_uid == uid
    assert layout.bob.work.lstat().st_uid == uid
    assert stat.S_IMODE(layout.bob.root.lstat().st_mode) == 0o700


# --- item 9: reading the agent's log -----------------------------------------------------------


def test_the_log_readers_refuse_links_and_anything_but_a_regular_file(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    root.mkdir()
    log = root / "agent.log"
    log.symlink_to(host_file(tmp_path))
    assert logtail.tail_lines(log, 10) == ([], 0)
    assert logtail.read_from(log, 0, 1000) == (0, b"")
    log.unlink()
    os.mkfifo(log)  # a FIFO would block a plain open() forever
    assert logtail.tail_lines(log, 10) == ([], 0)
    assert logtail.read_from(log, 0, 1000) == (0, b"")


def test_following_a_log_never_streams_the_file_its_link_points_at(tmp_path: Path) -> None:
    cfg = HiveConfig(state_dir=tmp_path / "state")
    log = cfg.agent_dir("bob") / "agent.log"
    log.parent.mkdir(parents=True)
    log.symlink_to(host_file(tmp_path, "operator-token-0123\n"))
    first = trio.run(logtail.read, "bob", log, 10)
    assert first["lines"] == []
    log.unlink()  # the agent puts a real file back: following shows it from its start
    log.write_text("a real line\n")
    after = trio.run(logtail.read, "bob", log, 10, first["cursor"])
    assert after["lines"] == ["a real line"]
    log.unlink()
    log.symlink_to(host_file(tmp_path, "operator-token-0123\n" * 3))
    again = trio.run(logtail.read, "bob", log, 10, after["cursor"])
    assert again["lines"] == [] and "operator-token" not in json.dumps(again)


def test_the_log_tail_reads_a_bounded_end_of_a_huge_sparse_log(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with open(log, "wb") as f:
        os.truncate(f.fileno(), SPARSE_BYTES)  # no newline in 2 GiB
    lines, size = logtail.tail_lines(log, 10)
    assert size == SPARSE_BYTES
    assert sum(len(line) for line in lines) <= 4 << 20  # logtail.MAX_TAIL_BYTES


def test_following_a_log_that_jumps_by_2_gib_skips_ahead_and_cuts_the_endless_line(
    tmp_path: Path,
) -> None:
    cfg = HiveConfig(state_dir=tmp_path / "state")
    log = cfg.agent_dir("bob") / "agent.log"
    log.parent.mkdir(parents=True)
    log.write_text("hello\n")
    first = trio.run(logtail.read, "bob", log, 10)
    assert first["lines"] == ["hello"]
    with open(log, "r+b") as f:
        os.truncate(f.fileno(), SPARSE_BYTES)  # 2 GiB of zeros, no newline
    page = trio.run(logtail.read, "bob", log, 10, first["cursor"])
    assert "skipped ahead" in page["lines"][0]
    assert page["lines"][-1].endswith("[hive: line cut]")
    assert sum(len(line) for line in page["lines"]) < 2 * logtail.MAX_LINE_BYTES


# --- item 21: size caps, off the trio thread ---------------------------------------------------


def test_a_capped_read_checks_the_size_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    (root / "state").mkdir(parents=True)
    notes = root / "state" / "notes.md"
    with open(notes, "wb") as f:
        os.truncate(f.fileno(), 2 << 30)  # sparse: no disk used
    with pytest.raises(safefs.FileTooLarge) as info:
        safefs.read_text(root, "state/notes.md", 1 << 20)
    assert "notes.md" in str(info.value) and "1048576-byte cap" in str(info.value)


def test_a_fifo_in_place_of_an_agent_file_is_refused_at_once(tmp_path: Path) -> None:
    """A plain open() of a FIFO blocks until a writer comes: the session file is read when a
    turn is built, so the agent could have hung the reader forever."""
    from hive.runtimes.claude import read_session_id

    paths = AgentPaths.for_agent("bob", tmp_path / "hive", tmp_path / "run")
    paths.ensure()
    os.mkfifo(paths.state / "claude-session")
    with pytest.raises(OSError) as info:
        read_session_id(paths)
    assert info.value.errno == errno.EINVAL and "not a regular file" in str(info.value)


def test_a_sparse_2_gib_notes_file_is_refused_by_compaction_and_the_daemon_answers(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    from tests.claude_hive import ClaudeHive, claude_agent, hive_toml
    from tests.fake_anthropic import FakeAnthropic, echo_text

    with FakeAnthropic() as api:
        api.default = echo_text
        config = hive_toml(claude_agent("alice"), notes_compact_bytes=2000)
        hive = ClaudeHive(make_hive(config, env=api.env()), api)
        notes = hive.agent_dir("alice") / "state" / "notes.md"
        with open(notes, "wb") as f:
            os.truncate(f.fileno(), 2 << 30)
        hive.admin("send", to="alice", body="carry on")
        event = hive.wait_until(
            lambda: [e for e in hive.events("alice") if e["kind"] == "notes_compaction_failed"],
            what="the compaction to be refused",
        )[0]
        reason = str(event["data"]["reason"])
        assert "notes.md" in reason and "cap" in reason and str(2 << 30) in reason
        assert [a["name"] for a in hive.admin("list")["agents"]] == ["alice"]
        assert notes.stat().st_size == 2 << 30  # left as it was


def test_an_oversized_agent_toml_in_a_spawn_commit_gets_a_clear_error(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    draft = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    repo = Path(draft["config_dir"])
    toml = repo / "agent.toml"
    padding = "# " + "x" * 78 + "\n"
    toml.write_text(toml.read_text() + padding * (MAX_CONFIG_BYTES // len(padding) + 1))
    git(repo, "commit", "-qam", "a comment-only bomb")
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    assert info.value.code == "config_too_large"
    assert "agent.toml" in info.value.message and f"{MAX_CONFIG_BYTES}-byte cap" in (
        info.value.message
    )
    assert {a["name"] for a in hive.admin("list")["agents"]} == {"manager", "bob"}
    assert hive.admin("pending")["pending"] == []


# --- item 24: a manager in bwrap reaches its drafts ----------------------------------------------

BWRAP_CONFIG = """
[hive]
# The test venv's Python lives under /root, which the agents' own uids cannot enter.
agent_python = "/usr/bin/python3"
backoff_initial = 0.2

[[agent]]
name = "manager"
sandbox = "bwrap"
"""

# Runs inside the manager's sandbox, as the manager's uid: the two-step spawn, by hand.
MANAGER_SCRIPT = r"""
import json, os, subprocess, sys
from hive.client import SyncClient

rule = '\n[[script]]\nmatch = "ping"\ndo = [{op = "reply", body = "pong from the draft"}]\n'
env = {**os.environ, "GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@hive",
       "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@hive"}
with SyncClient(os.environ["HIVE_SOCKET"], timeout=60) as c:
    draft = c.call("request_spawn_draft", name="helper")
    repo = draft["config_dir"]
    with open(os.path.join(repo, "agent.toml"), "a") as f:
        f.write(rule)
    subprocess.run(["git", "-C", repo, "commit", "-qam", "a ping rule"], env=env, check=True)
    asked = c.call("request_spawn_commit", name="helper", ref="HEAD")
other = os.path.join(os.path.dirname(os.path.dirname(repo)), "..", "helper")
print(json.dumps({"repo": repo, "id": asked["id"], "sees_helper_dir": os.path.exists(other)}))
"""


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A hive root the agents' own uids can traverse (pytest's tmp dirs are 0700)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="hive-drafts-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_manager_in_bwrap_drafts_commits_and_spawns(open_root: Path) -> None:
    import subprocess

    from hive.config import AgentConfig
    from hive.process import ProcessSpec
    from hive.runtimes.base import helper_python
    from hive.sandboxes import get_sandbox

    hive = RunningHive.start(open_root / "hive", BWRAP_CONFIG)
    try:
        # A first turn: the supervisor prepares the manager's sandbox (its uid, its dir).
        hive.admin("send", to="manager", body="wake up")
        hive.wait_until(
            lambda: [t for t in hive.turns("manager") if t["ended_at"]],
            what="the manager's first turn to end",
        )
        paths = AgentPaths.for_agent("manager", hive.state_dir, hive.state_dir / "run")
        manager = AgentConfig("manager", sandbox="bwrap")
        sandbox = get_sandbox("bwrap")
        python, python_env = helper_python(HiveConfig(agent_python="/usr/bin/python3"))
        spec = ProcessSpec(
            (python, "-c", MANAGER_SCRIPT),
            env={"PATH": "/usr/bin:/bin", **python_env, "HIVE_SOCKET": str(paths.socket)},
        )
        wrapped = sandbox.wrap(spec, manager, paths)
        done = subprocess.run(
            wrapped.argv, cwd=wrapped.cwd, env=wrapped.env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.splitlines()[-1])
        assert out["sees_helper_dir"] is False  # the new agent's own dir stays hidden
        assert Path(out["repo"]).is_relative_to(paths.root)
        assert Path(out["repo"]).stat().st_uid == paths.root.stat().st_uid  # the manager's

        hive.admin("approve", id=out["id"])
        hive.wait_until(lambda: hive.status("helper"), what="helper to start")
        hive.admin("send", to="helper", body="ping")
        hive.wait_until(
            lambda: any(m["body"] == "pong from the draft" for m in hive.messages("operator")),
            what="helper to answer from the config the manager committed",
        )
        assert not Path(out["repo"]).exists()  # it became helper's config repo
        assert (hive.state_dir / "agents" / "helper" / "config" / ".git").is_dir()
    finally:
        hive.terminate()


def test_a_draft_never_follows_links_the_manager_left_in_its_drafts_dir(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    hive = make_hive(CONFIG)
    drafts = hive.state_dir / "agents" / "manager" / "drafts"
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    # The drafts dir itself a link: refused, nothing written.
    drafts.symlink_to(host_dir)
    with pytest.raises(HiveError) as info:
        as_agent(hive, "manager", "request_spawn_draft", name="helper")
    assert info.value.code == "draft_failed"
    assert list(host_dir.iterdir()) == []
    drafts.unlink()
    # A link where the draft's repo goes: moved aside, a real repo made in its place.
    drafts.mkdir()
    (drafts / "helper").symlink_to(host_dir)
    draft = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    repo = Path(draft["config_dir"])
    assert repo == drafts.resolve() / "helper" and not repo.is_symlink()
    assert (repo / ".git").is_dir() and list(host_dir.iterdir()) == []

    # Swapped for a link after the request: the link is not adopted as the agent's config;
    # the agent gets a repo holding the approved config instead.
    asked = as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    repo.rename(repo.with_name("moved"))
    repo.symlink_to(host_dir)
    hive.admin("approve", id=asked["id"])
    hive.wait_until(lambda: hive.status("helper"), what="helper to start")
    config = hive.state_dir / "agents" / "helper" / "config"
    assert not config.is_symlink() and (config / ".git").is_dir()
    assert 'name = "helper"' in (config / "agent.toml").read_text()
    assert list(host_dir.iterdir()) == []


def test_purging_a_discarded_draft_removes_its_repo_from_the_managers_dir(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    repo = Path(as_agent(hive, "manager", "request_spawn_draft", name="helper")["config_dir"])
    assert repo.is_dir()
    hive.admin("destroy", names=["helper"], purge=True)
    assert not repo.exists() and hive.admin("drafts")["drafts"] == []
    # The name can be drafted again.
    again = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    assert Path(again["config_dir"]) == repo and (repo / ".git").is_dir()


def test_a_huge_file_in_a_spawn_commit_never_reaches_the_approval(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    repo = Path(as_agent(hive, "manager", "request_spawn_draft", name="helper")["config_dir"])
    line = "y" * 99 + "\n"
    (repo / "big.txt").write_text(line * 40_000)  # 4 MB of text beside a valid agent.toml
    git(repo, "add", "big.txt")
    git(repo, "commit", "-qm", "a large file")
    as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    [row] = hive.admin("pending")["pending"]
    diff = row["details"]["diff"]
    # The approval shows hive's rendering of the parsed agent.toml: no other file of the
    # commit is read, so its size is no cost to the supervisor.
    assert 'name = "helper"' in diff and "yyyy" not in diff and len(diff) < 8192
