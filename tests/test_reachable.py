"""Fresh-machine hygiene: what a bwrap agent's own uid must reach (hive's helper
interpreter and code, the state and socket dirs) lying behind a directory closed to others
(a checkout under /root, mode 0700) stops the start with one line naming that directory and
the fix, instead of every turn of every agent failing. ``./dev test`` says the same about
the checkout before it runs anything (``python -m hive.reachable``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hive_harness import RunningHive

SUPERVISOR = [sys.executable, "-m", "hive.cli.supervisor"]
DEBIAN_PYTHON = "/usr/bin/python3"
QUIET = ["--no-dashboard"]
# Exit 3: not found (1 would also be what a crash or setpriv's own failure gives).
FIND_HIVE = "import importlib.util as u, sys; sys.exit(3 if u.find_spec('hive') is None else 0)"

AGENTS = """
[[agent]]
name = "alice"
sandbox = "bwrap"

[[agent]]
name = "bob"
sandbox = "bwrap"
"""


@pytest.fixture
def places() -> Iterator[tuple[Path, Path]]:
    """A directory others may pass (0711), and one inside it they may not (0700)."""
    open_dir = Path(tempfile.mkdtemp(prefix="hive-reach-", dir="/var/tmp"))
    os.chmod(open_dir, 0o711)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    yield open_dir, closed
    shutil.rmtree(open_dir, ignore_errors=True)


def start(config: str, where: Path, state: Path) -> subprocess.CompletedProcess[str]:
    where.mkdir(parents=True, exist_ok=True)
    (where / "hive.toml").write_text(config)
    return subprocess.run(
        [*SUPERVISOR, "--config", str(where / "hive.toml"), "--state-dir", str(state), *QUIET],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def only_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_helper_interpreter_behind_a_closed_dir_stops_the_start_in_one_line(
    places: tuple[Path, Path],
) -> None:
    open_dir, closed = places
    (closed / "bin").mkdir()
    python = closed / "bin" / "python3"
    python.symlink_to(DEBIAN_PYTHON)
    config = f'[hive]\nagent_python = "{python}"\n{AGENTS}'
    state = open_dir / "state"
    line = only_line(start(config, open_dir / "a", state))
    assert line.startswith(f"hive-supervisor: {closed} is closed to other users (mode 0700)")
    assert "'alice', 'bob'" in line and f"{python} (the interpreter" in line
    assert f"chmod o+x {closed}" in line and "agent_python" in line
    assert not (state / "run" / "admin.sock").exists()
    # The fix it names is the whole fix.
    os.chmod(closed, 0o711)
    hive = RunningHive.start(open_dir / "b", config)
    assert hive.terminate() == 0


def test_a_state_dir_behind_a_closed_dir_stops_the_start_in_one_line(
    places: tuple[Path, Path],
) -> None:
    open_dir, closed = places
    config = f'[hive]\nagent_python = "{DEBIAN_PYTHON}"\n{AGENTS}'
    line = only_line(start(config, open_dir / "a", closed / "state"))
    assert line.startswith(f"hive-supervisor: {closed} is closed to other users")
    assert f"{closed}/state/agents (the agents' directories in the state dir) and" in line


def test_agents_that_run_as_the_supervisor_need_no_open_path(places: tuple[Path, Path]) -> None:
    _, closed = places
    config = '[[agent]]\nname = "alice"\n'  # the process sandbox: the supervisor's uid
    hive = RunningHive.start(closed / "hive", config)
    assert hive.terminate() == 0


def test_dev_test_names_a_checkout_the_agents_cannot_reach(places: tuple[Path, Path]) -> None:
    """``python -m hive.reachable`` (the first step of ./dev test) on a copy of hive's code
    inside a closed directory, and on this checkout."""
    import hive

    open_dir, closed = places
    shutil.copytree(Path(hive.__file__).parent, closed / "site" / "hive")
    env = {**os.environ, "PYTHONPATH": str(closed / "site")}
    done = subprocess.run(
        [sys.executable, "-m", "hive.reachable"],
        env=env,
        cwd=open_dir,  # not the checkout: `-m` looks in the working directory first
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"hive: {closed} is closed to other users (mode 0700)")
    assert f"{closed}/site/hive/__init__.py (hive's code" in line
    here = subprocess.run([sys.executable, "-m", "hive.reachable"], capture_output=True, text=True)
    assert (here.returncode, here.stderr) == (0, "")


def import_as_nobody(site: Path) -> subprocess.CompletedProcess[str]:
    """Python's search for the hive package in ``site``, by another uid, as a bwrap agent's
    helper makes it."""
    return subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            DEBIAN_PYTHON,
            "-c",
            FIND_HIVE,
        ],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o700, 0o711])
def test_an_import_root_others_cannot_list_is_named_with_the_rx_fix(
    places: tuple[Path, Path], mode: int
) -> None:
    """A clone made in a ``mktemp -d`` directory: its root (0700) holds the hive package.
    Letting others pass it (o+x) is not enough, because Python lists an import root to find
    a module in it; the line says ``chmod o+rx`` on that directory, and that is the fix."""
    import hive

    open_dir, _ = places
    site = open_dir / "clone"
    shutil.copytree(Path(hive.__file__).parent, site / "hive")
    os.chmod(site, mode)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-m", "hive.reachable"], env=env, cwd=open_dir, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"hive: {site} ") and f"chmod o+rx {site}`" in line, line
    hidden = import_as_nobody(site)
    assert (hidden.returncode, hidden.stderr) == (3, "")  # not found: it cannot look
    os.chmod(site, 0o755)
    fixed = subprocess.run(
        [sys.executable, "-m", "hive.reachable"], env=env, cwd=open_dir, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert (fixed.returncode, fixed.stderr) == (0, "")
    assert (import_as_nobody(site).returncode, import_as_nobody(site).stderr) == (0, "")
