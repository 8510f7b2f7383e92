"""Upgrades: a state dir written by an earlier hive starts under this one.

Each fixture in tests/fixtures/upgrade/vN is a hive.db written by the code that shipped
schema vN, running a small scenario (tests/upgrade_fixtures.py made them and remakes
them): delivered mail, and bob paused with three messages pending. This hive must open it,
back it up next to itself, migrate it, keep every message, and deliver bob's pending mail
once he is resumed. A database from a newer hive is refused with one line naming both
versions, and left as it was."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest

from hive.store.migrations import MIGRATIONS
from tests.control_support import inbox
from tests.hive_harness import RunningHive
from tests.upgrade_fixtures import DELIVERED, FIXTURES, PENDING

CURRENT = len(MIGRATIONS)
SUPERVISOR = [sys.executable, "-m", "hive.cli.supervisor"]


def fixture_dirs() -> list[Path]:
    return sorted(FIXTURES.glob("v*/"), key=lambda d: int(d.name[1:]))


def rows(db: Path) -> tuple[int, list[tuple[Any, ...]]]:
    # Read-only; on a committed fixture (not in WAL mode) this leaves no file beside it.
    """The schema version and every message (id, sender, recipient, body, state)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version = int(str(conn.execute("PRAGMA user_version").fetchall()[0][0]))
        messages = conn.execute(
            "SELECT id, sender, recipient, body, state FROM messages ORDER BY id"
        ).fetchall()
        return version, [tuple(m) for m in messages]
    finally:
        conn.close()


def copy_fixture(fixture: Path, root: Path) -> Path:
    state = root / "state"
    state.mkdir(parents=True)
    shutil.copyfile(fixture / "hive.db", state / "hive.db")
    return state / "hive.db"


def test_there_is_a_fixture_for_every_past_schema_version() -> None:
    have = {int(d.name[1:]) for d in fixture_dirs()}
    missing = sorted(set(range(1, CURRENT)) - have)
    assert not missing, (
        f"no upgrade fixture for schema version(s) {missing}: run "
        "`.venv/bin/python -m tests.upgrade_fixtures` and commit tests/fixtures/upgrade"
    )
    for d in fixture_dirs():
        meta = json.loads((d / "fixture.json").read_text())
        assert meta["schema_version"] == int(d.name[1:]) == rows(d / "hive.db")[0]
        # One file, not in WAL mode: reading it leaves nothing beside it in the tree.
        assert sorted(p.name for p in d.iterdir()) == ["fixture.json", "hive.db", "hive.toml"]


@pytest.mark.parametrize("fixture", fixture_dirs(), ids=lambda d: d.name)
def test_a_database_from_an_earlier_hive_is_backed_up_migrated_and_keeps_its_mail(
    fixture: Path, tmp_path: Path
) -> None:
    old_version, old_messages = rows(fixture / "hive.db")
    held = [m for m in old_messages if m[2] == "bob" and m[4] == "pending"]
    assert [(m[1], m[3]) for m in held] == PENDING  # what the fixture promises
    db = copy_fixture(fixture, tmp_path / "hive")
    hive = RunningHive.start(tmp_path / "hive", (fixture / "hive.toml").read_text())
    try:
        version, messages = rows(db)
        assert version == CURRENT
        assert messages[: len(old_messages)] == old_messages  # every message, as it was
        check_backup(db, old_version, old_messages)
        assert hive.status("bob")["paused"] is True  # the old hive's flags are kept too
        hive.admin("resume", names=["bob"])
        hive.wait_until(
            lambda: all(m["state"] == "delivered" for m in inbox(hive, "bob")),
            what="bob's pending mail to be delivered after the upgrade",
        )
        to_operator = {m["body"] for m in hive.messages("operator")}
        assert {f"pong: {DELIVERED}", "pong: ping held 1", "pong: ping held 2"} <= to_operator
        assert "pong: ping from alice" in {m["body"] for m in hive.messages("alice")}
        hive = hive.restart()  # a second start has nothing to migrate and backs nothing up
        check_backup(db, old_version, old_messages)
    finally:
        assert hive.terminate() == 0, hive.log_tail()


def check_backup(db: Path, old_version: int, old_messages: list[tuple[Any, ...]]) -> None:
    backups = sorted(db.parent.glob("hive.db.v*.bak"))
    if old_version == CURRENT:
        assert backups == []
        return
    [backup] = backups
    assert backup.name.startswith(f"hive.db.v{old_version}-")
    log = (db.parent.parent / "supervisor.log").read_text()
    assert f"upgraded {db} from schema v{old_version} to v{CURRENT}" in log
    assert f"kept at {backup}" in log
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert rows(backup) == (old_version, old_messages)


def test_a_database_from_a_newer_hive_is_refused_with_one_line(tmp_path: Path) -> None:
    newest = fixture_dirs()[-1]
    db = copy_fixture(newest, tmp_path)
    conn = apsw.Connection(str(db))
    conn.execute(f"PRAGMA user_version={CURRENT + 1}")
    conn.close()
    before = db.read_bytes()
    config = tmp_path / "hive.toml"
    config.write_text((newest / "hive.toml").read_text())
    done = subprocess.run(
        [*SUPERVISOR, "--config", str(config), "--state-dir", str(db.parent), "--no-dashboard"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"hive-supervisor: {db} has schema v{CURRENT + 1}")
    assert f"up to v{CURRENT}" in lines[0] and "newer hive" in lines[0]
    assert db.read_bytes() == before  # untouched: no migration, no backup, no socket
    assert not list(db.parent.glob("*.bak")) and not (db.parent / "run").exists()


@pytest.mark.parametrize("fixture", fixture_dirs(), ids=lambda d: d.name)
def test_hivectl_login_reads_a_database_the_start_has_not_migrated_yet(
    fixture: Path, tmp_path: Path
) -> None:
    """The start refuses a claude agent with no credential and says to run `hivectl login`
    first, on the database as the earlier hive left it: the login must read it."""
    db = copy_fixture(fixture, tmp_path)
    config = tmp_path / "hive.toml"
    config.write_text((fixture / "hive.toml").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hive.cli.hivectl",
            "login",
            "alice",
            "--state-dir",
            str(db.parent),
            "--config",
            str(config),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # It finds alice and gets as far as the login itself (which needs a terminal here).
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the claude login is interactive" in done.stderr
    assert rows(db)[0] == rows(fixture / "hive.db")[0]  # not migrated by the login
