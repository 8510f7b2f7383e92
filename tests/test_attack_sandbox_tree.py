"""Attacks on prepare()'s chown walk by what an agent can leave in its own directory.

Real supervisor, real bwrap agents with their own uids, run as root.
"""

from __future__ import annotations

import os
from pathlib import Path

from hive import safefs
from hive.sandboxes import uids
from tests.hive_harness import RunningHive
from tests.test_config_repo_owner import bwrap_hive, open_root, sandboxed_uid, spawn_bwrap

__all__ = ["bwrap_hive", "open_root"]  # fixtures, imported for pytest

DEPTH = 3000  # far past Python's recursion limit


def plant_deep_tree(top: Path, depth: int, uid: int) -> None:
    """``top/d/d/.../d``, ``depth`` levels, as the agent would make it (by descriptor:
    the path is too long for one syscall)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            os.chown("d", uid, uid, dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def last_turn_ended(hive: RunningHive, name: str, after: int) -> dict[str, object] | None:
    turns = [t for t in hive.turns(name) if t["ended_at"] and t["id"] > after]
    return turns[-1] if turns else None


def test_a_deep_tree_in_state_does_not_stop_the_agents_turns(bwrap_hive: RunningHive) -> None:
    """state/ is walked before every turn; a tree deeper than Python's recursion limit
    made every turn of the agent crash before it started (RecursionError in prepare)."""
    hive = bwrap_hive
    uid = sandboxed_uid(hive, "manager")
    hive.wait_until(lambda: last_turn_ended(hive, "manager", 0), what="the first turn to end")
    before = max(t["id"] for t in hive.turns("manager"))
    state = hive.state_dir / "agents" / "manager" / "state"
    plant_deep_tree(state, DEPTH, uid)
    try:
        hive.admin("send", to="manager", body="again")
        turn = hive.wait_until(
            lambda: last_turn_ended(hive, "manager", before), timeout=60, what="the next turn"
        )
        assert turn["exit_class"] == "ok", turn
    finally:
        safefs.remove_tree(state, "d")  # the fixture's rmtree would recurse past its limit


def test_the_chown_walk_stops_at_its_depth_cap_and_says_nothing_of_deeper(
    tmp_path: Path,
) -> None:
    """Directly: the walk re-owns down to MAX_WALK_DEPTH and leaves what is deeper (the
    agent made it, as its own uid: nothing of root's is there)."""
    root = tmp_path / "agents" / "a"
    (root / "state").mkdir(parents=True)
    plant_deep_tree(root / "state", DEPTH, 0)
    try:
        uid = uids.UID_BASE + 7 * uids.BLOCK
        uids.give_to(root, uid, uid)
        path = root / "state"
        for level in range(safefs.MAX_WALK_DEPTH - 1):
            assert os.lstat(path).st_uid == uid, level
            path = path / "d"
    finally:
        # pytest's own clean-up of old tmp dirs (shutil.rmtree) recurses past its limit.
        safefs.remove_tree(root, "state")


def test_destroy_purge_removes_a_tree_deeper_than_the_recursion_limit(
    bwrap_hive: RunningHive,
) -> None:
    """shutil.rmtree recursed once per level: the purge failed half-way and left the
    agent's files behind."""
    hive = bwrap_hive
    uid = spawn_bwrap(hive, "bob")
    root = hive.state_dir / "agents" / "bob"
    plant_deep_tree(root / "work", DEPTH, uid)
    out = hive.admin("destroy", names=["bob"], purge=True)
    assert out["agents"]["bob"]["purged"] is True
    assert not root.exists()


def test_removing_a_tree_never_follows_a_link_in_its_path_or_below(tmp_path: Path) -> None:
    """remove_tree walks to the parent by descriptor: a link in place of a directory on the
    way is refused, a link at the end or below is removed itself."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host file")
    root = tmp_path / "agent"
    (root / "drafts").mkdir(parents=True)
    (root / "drafts" / "x").mkdir()
    (root / "drafts" / "x" / "out").symlink_to(host)
    (root / "linked").symlink_to(host)
    safefs.remove_tree(root, "drafts/x")
    assert not (root / "drafts" / "x").exists()
    try:
        safefs.remove_tree(root, "linked/keep")
    except OSError:
        pass  # ELOOP: refused
    os.unlink(root / "linked")
    (root / "linked").symlink_to(host / "keep")
    safefs.remove_tree(root, "linked")
    assert (host / "keep").read_text() == "host file"
    assert not os.path.lexists(root / "linked")


def test_a_purged_name_spawned_again_gets_its_whole_new_tree(bwrap_hive: RunningHive) -> None:
    """The walk is skipped for trees this process walked before; a purged agent's name
    spawned again is a new tree (made by root), which must be walked whole: its work/
    stayed root's, and the agent could not write its own work dir."""
    hive = bwrap_hive
    uid = spawn_bwrap(hive, "bob")
    hive.admin("destroy", names=["bob"], purge=True)
    assert spawn_bwrap(hive, "bob") == uid  # the same name, the same preferred slot
    root = hive.state_dir / "agents" / "bob"
    # The uid is claimed before the walk: wait for the walk (before: work/ stayed root's).
    hive.wait_until(
        lambda: {(root / d).lstat().st_uid for d in ("work", "state", "config")} == {uid},
        what="bob's new tree to be bob's",
    )
