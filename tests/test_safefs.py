"""The supervisor (root) never follows an agent's symlinks out of the agent's directory."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from hive import safefs
from tests.hive_harness import RunningHive


def test_a_link_in_place_of_a_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret")
    root = tmp_path / "agent"
    root.mkdir()
    (root / "agent.log").symlink_to(victim)
    with pytest.raises(OSError) as err:
        safefs.open_append(root, "agent.log")
    assert err.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        safefs.read_text(root, "agent.log")
    assert victim.read_text() == "secret"


def test_a_link_in_place_of_a_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "agent"
    root.mkdir()
    (root / "state").symlink_to(outside)
    with pytest.raises(OSError):
        safefs.write_text_atomic(root, "state/session-id", "x")
    assert list(outside.iterdir()) == []


def test_atomic_write_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    root = tmp_path / "agent"
    (root / "state").mkdir(parents=True)
    (root / "state" / "notes.md").symlink_to(victim)
    safefs.write_text_atomic(root, "state/notes.md", "new notes")
    assert victim.read_text() == "untouched"
    assert (root / "state" / "notes.md").read_text() == "new notes"
    assert not (root / "state" / "notes.md").is_symlink()


def test_relative_paths_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        safefs.read_text(tmp_path, "/etc/passwd")
    with pytest.raises(ValueError):
        safefs.read_text(tmp_path, "../x")


CONFIG = """
[hive]
backoff_initial = 0.05

[[agent]]
name = "manager"

[[agent]]
name = "noisy"
[[agent.script]]
match = "*"
do = [{op = "crash", code = 2, message = "to stderr", times = 1}, {op = "reply", body = "ok"}]
"""


def test_the_turn_log_is_not_written_through_an_agents_symlink(
    make_hive: Callable[..., RunningHive], tmp_path: Path
) -> None:
    hive = make_hive(CONFIG)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    log = hive.state_dir / "agents" / "noisy" / "agent.log"
    log.unlink(missing_ok=True)
    log.symlink_to(victim)
    hive.admin("send", to="noisy", body="go")
    hive.wait_until(
        lambda: any(m["body"] == "ok" for m in hive.messages("operator")),
        what="the retried turn to answer",
    )
    # The crashed turn's stderr had nowhere safe to go; the victim is untouched and the
    # agent still works.
    assert victim.read_text() == "untouched\n"
