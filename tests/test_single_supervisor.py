"""One supervisor per state dir: a second one started on it is refused with one line
naming the first's pid, and the first goes on as if nothing happened (a second daemon
used to take over the agents' sockets and end the first one's running turns as
interrupted while they still ran)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.hive_harness import RunningHive

HOLDER = """
[[agent]]
name = "holder"
[[agent.script]]
match = "hold"
do = [{op = "recv", wait = 60}]
"""


def test_a_second_supervisor_on_the_same_state_dir_is_refused(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(HOLDER)
    hive.admin("send", to="holder", body="hold")
    hive.wait_until(lambda: hive.status("holder")["turn_state"] == "waiting_recv", what="held")
    [turn] = hive.turns("holder")
    config = hive.root / "second.toml"
    config.write_text(HOLDER)
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "hive.cli.supervisor",
            "--config",
            str(config),
            "--state-dir",
            str(hive.state_dir),
            "--no-dashboard",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, second.stderr
    assert f"another hive-supervisor (pid {hive.process.pid}) is running" in lines[0]
    # The first is untouched: its turn still runs, its sockets still answer.
    assert hive.status("holder")["turn_state"] == "waiting_recv"
    [still] = hive.turns("holder")
    assert still["id"] == turn["id"] and still["ended_at"] is None
    # Once it is gone, the state dir is free again (the kernel drops the lock, even on
    # kill -9).
    hive.kill()
    hive = hive.restart()
    assert hive.status("holder")


def test_the_demo_is_refused_on_a_state_dir_a_supervisor_holds(
    make_hive: Callable[..., RunningHive],
) -> None:
    """The demo starts the daemon itself (not through hive-supervisor's pre-flight): it
    takes the same lock, and leaves the running hive's turn alone."""
    hive = make_hive(HOLDER)
    hive.admin("send", to="holder", body="hold")
    hive.wait_until(lambda: hive.status("holder")["turn_state"] == "waiting_recv", what="held")
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "hive.cli.demo",
            "--state-dir",
            str(hive.state_dir),
            "--no-dashboard",
            "--seconds",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert f"another hive-supervisor (pid {hive.process.pid}) is running" in demo.stderr
    [turn] = hive.turns("holder")
    assert turn["ended_at"] is None and hive.status("holder")["turn_state"] == "waiting_recv"
