"""SIGTERM mid-turn (and SIGINT, Ctrl-C, just as cleanly): the daemon stops at once with exit
code 0, leaves no turn process, no socket and a sound database, keeps the turn's message
pending, and delivers it after a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable

import psutil
import pytest

from tests.hive_harness import RunningHive, wait_until

SLEEP = 60

CONFIG = f"""
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "sleeper"
[[agent.script]]
do = [
    {{op = "set_status", text = "in turn {{turn}}"}},
    {{op = "sleep", seconds = {SLEEP}, times = 1}},
    {{op = "reply", body = "done with: {{body}}"}},
]
"""


def turn_processes(hive: RunningHive) -> list[psutil.Process]:
    """The scripted turn processes the supervisor started (its own children)."""
    out = []
    for child in psutil.Process(hive.process.pid).children(recursive=True):
        try:
            if any("scripted_agent" in part for part in child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (not zombie) processes in the process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_sigterm_mid_turn_stops_cleanly_and_the_message_survives(
    make_hive: Callable[..., RunningHive], stop_signal: signal.Signals
) -> None:
    hive = make_hive(CONFIG)
    hive.wait_until(
        lambda: hive.admin("send", to="sleeper", body="take your time"),
        what="the operator's message to be accepted",
    )
    message_id = next(m["id"] for m in hive.messages("sleeper") if m["body"] == "take your time")

    # Mid-turn: the turn has set its status and is inside its 60 s sleep.
    hive.wait_until(
        lambda: hive.status("sleeper")["status_text"].startswith("in turn"),
        what="the sleeper's turn to start",
    )
    # ... and has counted its one sleep (else the turn after the restart sleeps 60 s too:
    # a signal sent between the status and that count made this test flaky under load).
    counters = hive.state_dir / "agents" / "sleeper" / "state" / "script-state.json"
    hive.wait_until(counters.exists, what="the sleep step to be counted")
    [turn_proc] = hive.wait_until(lambda: turn_processes(hive), what="the turn process")
    pgid = os.getpgid(turn_proc.pid)
    assert pgid == turn_proc.pid, "a turn runs in its own process group"
    assert pgid != os.getpgid(hive.process.pid)
    [first_turn] = hive.turns("sleeper")
    assert first_turn["ended_at"] is None and first_turn["message_ids"] == [message_id]

    hive.process.send_signal(stop_signal)
    try:
        code = hive.process.wait(timeout=SLEEP / 3)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"supervisor still running {SLEEP / 3:g}s after {stop_signal.name}; log:\n"
            f"{hive.log_tail()}"
        ) from None
    assert code == 0, hive.log_tail()
    assert "Traceback" not in hive.log_tail(200), hive.log_tail()
    # The admin socket is gone, and nothing listens on the agents' socket files.
    assert not hive.admin_path.exists()
    for path in hive.agent_socket("sleeper").parent.glob("*.sock"):
        with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(str(path))

    # Nothing of the turn is left running.
    wait_until(lambda: not group_members(pgid), timeout=10, what="the turn's process group")

    db = hive.db()
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        [(state,)] = db.execute("SELECT state FROM messages WHERE id = ?", (message_id,))
        assert state == "pending", "a turn cut by shutdown did not deliver its message"
    finally:
        db.close()

    hive = hive.restart()
    try:
        check_delivered_after_restart(hive, message_id, first_turn["id"])
    finally:
        hive.terminate()


def check_delivered_after_restart(hive: RunningHive, message_id: int, first_turn_id: int) -> None:
    hive.wait_until(
        lambda: any(
            m["id"] == message_id and m["state"] == "delivered" for m in hive.messages("sleeper")
        ),
        what="the message to be delivered after the restart",
    )
    delivering = [
        t
        for t in hive.turns("sleeper")
        if message_id in t["message_ids"] and t["exit_class"] == "ok"
    ]
    [new_turn] = delivering
    assert new_turn["id"] > first_turn_id
    assert new_turn["ended_at"] is not None
    [delivered] = [m for m in hive.messages("sleeper") if m["id"] == message_id]
    assert delivered["turn_id"] == new_turn["id"]
    hive.wait_until(
        lambda: "done with: take your time" in [m["body"] for m in hive.messages("operator")],
        what="the sleeper's reply",
    )
