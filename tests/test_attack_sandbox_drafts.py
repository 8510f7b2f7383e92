"""Attacks on the supervisor's file work in agents' directories, played by a bwrap manager.

Real supervisor, real bwrap agents with their own uids (see tests/test_config_repo_owner.py
for the harness), run as root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.control_support import as_agent
from tests.hive_harness import RunningHive
from tests.test_config_repo_owner import bwrap_hive, open_root, sandboxed_uid, spawn_bwrap

__all__ = ["bwrap_hive", "open_root"]  # fixtures, imported for pytest

SECRET = "bob's own secret, never the manager's"


def owners_below(root: Path) -> set[int]:
    found = {root.lstat().st_uid}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.lstat(os.path.join(dirpath, name)).st_uid)
    return found


def test_a_draft_of_a_kept_name_never_hands_the_kept_repo_to_the_manager(
    bwrap_hive: RunningHive,
) -> None:
    """A destroyed agent's kept directory is the operator's to reuse or purge: a manager
    asking for a draft of that name must not walk away with the kept config repo (its
    history, its files), chowned to the manager's uid, before anyone approved anything."""
    hive = bwrap_hive
    manager_uid = sandboxed_uid(hive, "manager")
    bob_uid = spawn_bwrap(hive, "bob")
    kept = hive.state_dir / "agents" / "bob" / "config"
    secret = kept / "secret.txt"
    secret.write_text(SECRET)
    os.chown(secret, bob_uid, bob_uid)
    os.chmod(secret, 0o600)
    hive.admin("destroy", names=["bob"])  # kept, not purged

    draft = as_agent(hive, "manager", "request_spawn_draft", name="bob")

    repo = Path(draft["config_dir"])
    assert repo.is_relative_to(hive.state_dir / "agents" / "manager")
    assert not (repo / "secret.txt").exists()
    assert SECRET not in "".join(
        p.read_text(errors="replace") for p in repo.rglob("*") if p.is_file() and not p.is_symlink()
    )
    # The kept repo is where the operator left it, still bob's.
    assert secret.read_text() == SECRET
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert owners_below(kept) == {bob_uid}
    assert manager_uid not in owners_below(kept)


def test_a_hard_link_in_a_draft_gives_the_manager_no_hold_on_the_new_agents_files(
    bwrap_hive: RunningHive,
) -> None:
    """The draft repo moves into the new agent's directory at approval. A file the manager
    hard-linked there from its own directory (it owns both names, so the kernel lets it)
    was not re-owned by the walk (it skips files with other links) and stayed writable
    through the manager's own name: a hold on another agent's files for good."""
    hive = bwrap_hive
    manager_uid = sandboxed_uid(hive, "manager")
    draft = as_agent(hive, "manager", "request_spawn_draft", name="helper")
    repo = Path(draft["config_dir"])
    handle = hive.state_dir / "agents" / "manager" / "state" / "handle"
    planted = repo / ".git" / "description"
    planted.unlink()
    handle.write_text("the manager's\n")
    os.chown(handle, manager_uid, manager_uid)
    os.link(handle, planted)  # as the manager would, from its sandbox

    request = as_agent(hive, "manager", "request_spawn_commit", name="helper", ref="HEAD")
    hive.admin("approve", id=request["id"])
    hive.wait_until(lambda: hive.status("helper"), what="helper to start")
    helper_uid = sandboxed_uid(hive, "helper")
    adopted = hive.state_dir / "agents" / "helper" / "config" / ".git" / "description"
    # The uid is claimed before the chown walk: wait for the walk to reach the file.
    hive.wait_until(
        lambda: os.lstat(adopted).st_uid == helper_uid, what="the adopted file to be helper's"
    )

    assert manager_uid not in owners_below(hive.state_dir / "agents" / "helper")
    assert os.lstat(adopted).st_ino != os.lstat(handle).st_ino
    assert os.lstat(adopted).st_uid == helper_uid
    assert adopted.read_text() == "the manager's\n"  # its content came along, as a copy
    handle.write_text("written later through the manager's own name\n")
    assert adopted.read_text() == "the manager's\n"
