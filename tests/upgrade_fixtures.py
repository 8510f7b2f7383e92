"""Databases written by every past schema version, made by that version's own code.

    .venv/bin/python -m tests.upgrade_fixtures            # make the fixtures that are missing
    .venv/bin/python -m tests.upgrade_fixtures --force 2  # make v2's again

For each schema version N (SQLite's user_version, one per step of
hive/store/migrations.py), the code that wrote it is the newest commit of this repository
whose migrations.py has N steps: the commit before the one that added step N+1, or HEAD for
the newest version. That commit's tree is unpacked (``git archive``, into a temporary dir
removed afterwards) and laid out as it would be installed (its pyproject's package-dir), and
its own ``hive-supervisor`` runs ``SCENARIO_CONFIG`` while this module drives it through
the admin and agent sockets (the wire protocol is the same in every version):

- the operator pings alice and waits for her pong (delivered mail, turns, operator mail);
- bob is paused, then gets two pings from the operator and one from alice: they stay
  pending (``PENDING``);
- SIGTERM, as systemd stops it.

The database (checkpointed) lands in ``tests/fixtures/upgrade/vN/hive.db`` with the config
it ran with (``hive.toml``) and ``fixture.json`` (the version, the commit). When a new
migration step ships, the newest fixture's version becomes a past one: run this again and
commit the new directory (tests/test_upgrade.py fails, saying so, until then).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import apsw

from hive.client import HiveError, SyncClient

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upgrade"
MIGRATIONS_FILE = "hive/store/migrations.py"
MAX_TRIES = 20

# Accepted by the config schema of every version so far (keep it that way).
SCENARIO_CONFIG = """\
[hive]
backoff_initial = 0.2

[[agent]]
name = "alice"
[[agent.script]]
match = "ping"
do = [{op = "reply", body = "pong: {body}"}]

[[agent]]
name = "bob"
[[agent.script]]
match = "ping"
do = [{op = "reply", body = "pong: {body}"}]
"""
DELIVERED = "ping delivered"
# What bob holds pending when the old hive stops: (sender, body).
PENDING = [("operator", "ping held 1"), ("operator", "ping held 2"), ("alice", "ping from alice")]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout


def steps_at(commit: str) -> int:
    """How many migration steps ``commit`` ships (its MIGRATIONS list, evaluated)."""
    namespace: dict[str, Any] = {}
    exec(compile(git("show", f"{commit}:{MIGRATIONS_FILE}"), MIGRATIONS_FILE, "exec"), namespace)
    return len(namespace["MIGRATIONS"])


def candidates_by_version() -> dict[int, list[str]]:
    """Each schema version that shipped, and the commits (first-parent history, newest
    first) that write it: the newest one that runs the scenario makes its fixture."""
    touching = set(git("log", "--first-parent", "--format=%H", "--", MIGRATIONS_FILE).split())
    out: dict[int, list[str]] = {}
    steps = 0
    for commit in reversed(git("rev-list", "--first-parent", "HEAD").split()):
        if commit in touching:
            steps = steps_at(commit)
        if steps:
            out.setdefault(steps, []).insert(0, commit)
    return out


def unpack(commit: str, into: Path) -> Path:
    """``commit``'s tree, laid out as installed: ``into/site`` holds its hive package."""
    src = into / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    site = into / "site"
    shutil.copytree(src / "hive", site / "hive")
    meta = tomllib.loads((src / "pyproject.toml").read_text())
    for package, folder in meta["tool"]["setuptools"].get("package-dir", {}).items():
        shutil.copytree(src / folder, site / package.replace(".", "/"), dirs_exist_ok=True)
    return site


def old_python(site: Path, into: Path) -> Path:
    """An interpreter that imports the old hive from ``site`` and its dependencies from this
    venv, and not this checkout's hive (whose editable-install hook lives in a .pth of this
    venv that the new one does not run). The daemon's helpers (scripted turns) run on the
    daemon's own interpreter, so they run the old code too."""
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    here = Path(next(p for p in sys.path if p.endswith("site-packages")))
    [there] = list((venv / "lib").glob("python3*/site-packages"))
    (there / "hive-fixture.pth").write_text(f"{site}\n{here}\n")
    return venv / "bin" / "python"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (HiveError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def drive(state: Path) -> None:
    """The scenario, through the old daemon's own sockets."""
    admin = state / "run" / "admin.sock"

    def call(op: str, **args: Any) -> Any:
        with SyncClient(admin, timeout=30) as c:
            return c.call(op, **args)

    def operator_bodies() -> list[str]:
        return [m["body"] for m in call("messages", agent="operator", limit=100)["messages"]]

    wait_for(lambda: call("version"), "the old supervisor to start")
    call("send", to="alice", body=DELIVERED)
    wait_for(lambda: f"pong: {DELIVERED}" in operator_bodies(), "alice's pong", timeout=20)
    call("pause", names=["bob"])
    for sender, body in PENDING:
        if sender == "operator":
            call("send", to="bob", body=body)
        else:
            with SyncClient(state / "run" / "agents" / f"{sender}.sock", timeout=30) as c:
                c.call("send", to="bob", body=body)


def run_old_hive(site: Path, work: Path) -> Path:
    """Run the scenario on the code in ``site``; the state dir it leaves."""
    (work / "hive.toml").write_text(SCENARIO_CONFIG)
    state = work / "state"
    argv = [str(old_python(site, work)), "-m", "hive.cli.supervisor", "--config", "hive.toml"]
    argv += ["--state-dir", str(state), "--no-dashboard"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with open(work / "supervisor.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        drive(state)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its log:\n{(work / 'supervisor.log').read_text()}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        raise RuntimeError(
            f"the old supervisor exited {code}:\n{(work / 'supervisor.log').read_text()}"
        )
    return state


def make_fixture(version: int, commit: str, skipped: list[str]) -> Path:
    out = FIXTURES / f"v{version}"
    with tempfile.TemporaryDirectory(prefix=f"hive-fixture-v{version}-") as tmp:
        work = Path(tmp)
        site = unpack(commit, work)
        state = run_old_hive(site, work)
        conn = apsw.Connection(str(state / "hive.db"))
        try:  # everything into the main file: the fixture is one file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written = int(conn.execute("PRAGMA user_version").fetchall()[0][0])
            # Out of WAL mode (the header's two format bytes; no row changes): a reader of
            # the committed file then leaves no -shm/-wal beside it. hive turns WAL back on.
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
        if written != version:
            raise RuntimeError(f"{commit} wrote schema v{written}, expected v{version}")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        shutil.copyfile(state / "hive.db", out / "hive.db")
    (out / "hive.toml").write_text(SCENARIO_CONFIG)
    subject = git("log", "-1", "--format=%s", commit).strip()
    meta = {
        "schema_version": version,
        "commit": commit,
        "commit_subject": subject[:120],
        "newer_commits_that_did_not_run": skipped,
    }
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def make_first_that_runs(version: int, candidates: list[str]) -> Path:
    """The fixture from the newest candidate whose code runs the scenario. (Some commits
    of the early history do not run: their trees mix files of different days.)"""
    skipped: list[str] = []
    for commit in candidates[:MAX_TRIES]:
        print(f"v{version}: running {commit[:10]} ...", flush=True)
        try:
            return make_fixture(version, commit, skipped)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            print(f"v{version}: {commit[:10]} does not run it: {exc}"[:2000])
            skipped.append(commit)
    raise SystemExit(f"v{version}: none of the newest {MAX_TRIES} commits ran the scenario")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", type=int, action="append", default=[], metavar="N")
    args = p.parse_args(argv)
    for version, candidates in sorted(candidates_by_version().items()):
        if (FIXTURES / f"v{version}" / "hive.db").exists() and version not in args.force:
            print(f"v{version}: present")
            continue
        print(f"v{version}: made {make_first_that_runs(version, candidates)}")


if __name__ == "__main__":
    main()
