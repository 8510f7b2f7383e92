"""hive-supervisor under a real systemd (tests/systemd_boot.py): the unit as
hive-install-systemd writes it, started, killed, hung, refused and stopped, with scripted
agents under load. Test values (a short WatchdogSec, RestartSec, start limit) come from a
drop-in, as an operator would shrink them; nothing asserts on durations, only on what
systemd and the hive report (ActiveState, Result, NRestarts, journal lines, messages).
"""

from __future__ import annotations

import re
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hive.client import HiveError, SyncClient
from tests.systemd_boot import HIVE_UNIT, REPO, BootedSystemd, boot_systemd, wait_until

CONFIG = """
[hive]
admin_group = "hive-admin"
dashboard = false
backoff_initial = 0.05
backoff_max = 0.2
max_turn_messages = 20

[[agent]]
name = "manager"

[[agent]]
name = "worker"
inbox_cap = 1000000
[[agent.script]]
match = "*"
do = [{op = "set_status", text = "turn {turn}"}]

[[agent]]
name = "src1"
rate_limit_per_minute = 10000000

[[agent]]
name = "src2"
rate_limit_per_minute = 10000000
"""

# Every test's drop-in starts with this: no core files (the namespace's / is the host's),
# quick restarts.
BASE_DROPIN = "[Service]\nLimitCORE=0\nRestartSec=200ms\n"
SENDS_PER_SOURCE = 300


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystemd]:
    with boot_systemd(tmp_path_factory.mktemp("systemd")) as sd:
        yield sd


@pytest.fixture
def systemd(booted: BootedSystemd) -> Iterator[BootedSystemd]:
    """The module's systemd, with the hive's unit, state and drop-in gone after each test;
    its ``mark`` is where this test's journal begins."""
    booted.mark = booted.cursor()
    yield booted
    booted.reset_hive()


def unit_journal(sd: BootedSystemd) -> str:
    """The hive unit's journal lines (systemd's and the daemon's) of this test."""
    return sd.journal("-u", HIVE_UNIT, after=sd.mark)


# --- talking to the hive in the namespace -------------------------------------------------


def admin(sd: BootedSystemd, op: str, **args: Any) -> Any:
    with SyncClient(sd.path("/run/hive/admin.sock"), timeout=30) as c:
        return c.call(op, **args)


def agent_socket(sd: BootedSystemd, name: str) -> str:
    return str(sd.path(f"/run/hive/agents/{name}.sock"))


def start_hive(sd: BootedSystemd, dropin: str = "", config: str = CONFIG) -> dict[str, str]:
    sd.install_hive(config, dropin=BASE_DROPIN + dropin)
    sd.systemctl("start", HIVE_UNIT)
    return sd.show(HIVE_UNIT, "MainPID", "NRestarts", "ActiveState")


def restarted(sd: BootedSystemd, old_pid: str, restarts: int = 1) -> dict[str, str]:
    """Until systemd has restarted the hive ``restarts`` times and the new one serves."""

    def back() -> dict[str, str] | None:
        props = sd.show(HIVE_UNIT, "MainPID", "NRestarts", "ActiveState", "SubState")
        serving = props["ActiveState"] == "active" and props["MainPID"] not in ("0", old_pid)
        if serving and int(props["NRestarts"]) >= restarts:
            return props
        return None

    try:
        return wait_until(back, 60, "systemd to restart the hive")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{unit_journal(sd)}") from None


def messages(sd: BootedSystemd, agent: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = admin(sd, "messages", agent=agent, limit=1000)["messages"]
    return result


def turns(sd: BootedSystemd, agent: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = admin(sd, "turns", agent=agent, limit=1000)["turns"]
    return result


def undelivered(sd: BootedSystemd, agent: str, ids: list[int]) -> list[int]:
    try:
        states = {m["id"]: m["state"] for m in messages(sd, agent)}
    except (HiveError, OSError):
        return list(ids)  # between two daemons: ask again
    return [i for i in ids if states.get(i) != "delivered"]


def wait_delivered(sd: BootedSystemd, ids: list[int], agent: str = "worker") -> None:
    """Until every message in ``ids`` is delivered (its turn ended cleanly)."""
    try:
        wait_until(lambda: not undelivered(sd, agent, ids), 120, f"{agent} to get them all")
    except AssertionError:
        left = undelivered(sd, agent, ids)
        raise AssertionError(f"{len(left)} of {len(ids)} not delivered: {left[:10]}") from None


# --- load: two sources sending acknowledged messages through restarts ---------------------


@dataclass
class Load:
    """Senders that keep sending until each has SENDS_PER_SOURCE acknowledged messages,
    reconnecting through daemon restarts. ``acked`` is what the clients saw acknowledged."""

    sd: BootedSystemd
    acked: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name in ("src1", "src2"):
            t = threading.Thread(target=self._send, args=(name,), daemon=True)
            t.start()
            self.threads.append(t)

    def _send(self, name: str) -> None:
        done = 0
        retries = Retries()
        while done < SENDS_PER_SOURCE and not retries.used_up():
            try:
                with SyncClient(agent_socket(self.sd, name), timeout=10) as c:
                    while done < SENDS_PER_SOURCE:
                        msg_id = c.call("send", to="worker", body=f"{name}:{done}")["id"]
                        with self.lock:
                            self.acked.append(msg_id)
                        done += 1
            except (HiveError, OSError):
                retries.pause()  # the daemon is gone: the send in flight was not acknowledged

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def join(self) -> None:
        for t in self.threads:
            t.join(180)
            assert not t.is_alive(), "a sender did not finish"


@dataclass
class Retries:
    """A bounded budget of reconnection attempts for a sender."""

    left: int = 3000

    def used_up(self) -> bool:
        return self.left <= 0

    def pause(self) -> None:
        self.left -= 1
        time.sleep(0.02)  # between reconnection attempts, not a synchronisation


def assert_all_delivered(sd: BootedSystemd, acked: list[int]) -> None:
    assert len(acked) == 2 * SENDS_PER_SOURCE
    assert len(set(acked)) == len(acked)
    wait_delivered(sd, acked)


# --- the tests ------------------------------------------------------------------------------


def test_start_returns_after_ready_and_status_shows_the_daemons_text(
    systemd: BootedSystemd,
) -> None:
    props = start_hive(systemd)
    # `systemctl start` of a Type=notify unit returned: READY=1 came, and READY=1 is sent
    # only once the agents are up and the admin socket serves. So it answers now, at once.
    assert props["ActiveState"] == "active"
    assert {a["name"] for a in admin(systemd, "list")["agents"]} >= {"manager", "worker"}
    status = systemd.systemctl("status", HIVE_UNIT).stdout
    assert 'Status: "serving 4 agents; admin socket /run/hive/admin.sock"' in status
    assert systemd.show(HIVE_UNIT, "StatusText")["StatusText"] == (
        "serving 4 agents; admin socket /run/hive/admin.sock"
    )


def test_kill_9_of_the_main_pid_restarts_it_and_loses_no_acknowledged_message(
    systemd: BootedSystemd,
) -> None:
    before = start_hive(systemd)
    load = Load(systemd)
    load.start()
    wait_until(lambda: load.count() >= SENDS_PER_SOURCE // 2, 60, "half the sends")
    systemd.run("kill", "-9", before["MainPID"])
    after = restarted(systemd, before["MainPID"])
    assert after["NRestarts"] == "1"
    load.join()
    assert_all_delivered(systemd, load.acked)
    # The agents resumed: the worker ran turns after the restart, and they ended cleanly.
    worker_turns = turns(systemd, "worker")
    assert len(worker_turns) > 1 and worker_turns[0]["exit_class"] == "ok"
    assert "Main process exited, code=killed, status=9/KILL" in unit_journal(systemd)


WATCHDOG_DROPIN = "WatchdogSec=3\nTimeoutStopSec=10\nEnvironment=HIVE_FAULT_INJECTION=1\n"


def test_a_stopped_daemon_is_killed_by_the_watchdog_and_restarted(
    systemd: BootedSystemd,
) -> None:
    before = start_hive(systemd, WATCHDOG_DROPIN)
    systemd.run("kill", "-STOP", before["MainPID"])  # its loop and every thread stand still
    after = restarted(systemd, before["MainPID"])
    assert after["NRestarts"] == "1"
    journal = unit_journal(systemd)
    assert "Watchdog timeout" in journal
    assert "Failed with result 'watchdog'" in journal
    # The new daemon serves: a message to the worker makes a turn that ends cleanly.
    msg_id = admin(systemd, "send", to="worker", body="after the watchdog")["id"]
    wait_delivered(systemd, [msg_id])


def test_a_hung_actor_is_killed_by_the_watchdog_and_nothing_acknowledged_is_lost(
    systemd: BootedSystemd,
) -> None:
    before = start_hive(systemd, WATCHDOG_DROPIN)
    load = Load(systemd)
    load.start()
    wait_until(lambda: load.count() >= SENDS_PER_SOURCE // 3, 60, "a third of the sends")
    # The loop keeps running and the Supervisor answers; only the Store's thread is stuck
    # (far longer than the watchdog): the daemon must stop pinging and be restarted.
    admin(systemd, "inject_fault", target="store", hang_seconds=600)
    after = restarted(systemd, before["MainPID"])
    assert after["NRestarts"] == "1"
    journal = unit_journal(systemd)
    # The daemon said why it stopped pinging: the Store (maybe others waiting on it).
    silent = re.findall(r"watchdog: (.*) did not answer", journal)
    assert silent and "store" in silent[0].split(", "), journal
    assert "Failed with result 'watchdog'" in journal
    load.join()
    assert_all_delivered(systemd, load.acked)


def test_a_bad_config_fails_at_once_with_the_reason_and_no_restarts(
    systemd: BootedSystemd,
) -> None:
    start_hive(systemd)
    systemd.systemctl("stop", HIVE_UNIT)
    # Edited after the install (which would have refused it): an agent without a name.
    systemd.write("/etc/hive/hive.toml", CONFIG + '\n[[agent]]\nmodel = "x"\n')
    mark = systemd.cursor()
    assert systemd.systemctl("start", HIVE_UNIT, check=False).returncode != 0
    props = systemd.wait_state(HIVE_UNIT, "failed")
    assert props["Result"] == "exit-code"
    assert props["NRestarts"] == "0"
    assert systemd.show(HIVE_UNIT, "ExecMainStatus")["ExecMainStatus"] == "78"
    journal = systemd.journal("-u", HIVE_UNIT, after=mark)
    assert journal.count("Main process exited, code=exited, status=78/CONFIG") == 1, journal
    [reason] = [line for line in journal.splitlines() if line.startswith("hive-supervisor: ")]
    assert "name" in reason, journal
    assert "Failed with result 'exit-code'" in journal


PORT = 18417
HOLD_PORT = (
    "import socket, time\n"
    "s = socket.socket()\n"
    f"s.bind(('127.0.0.1', {PORT}))\n"
    "s.listen()\n"
    "time.sleep(3600)\n"
)


def test_a_taken_port_ends_in_failed_after_the_start_limit_not_a_restart_storm(
    systemd: BootedSystemd,
) -> None:
    config = CONFIG.replace("dashboard = false", f"dashboard = true\ndashboard_port = {PORT}")
    systemd.run("systemd-run", "--unit=port-holder", "--collect", "python3", "-c", HOLD_PORT)
    try:
        connect = f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 5)"
        wait_until(
            lambda: systemd.run("python3", "-c", connect, check=False).returncode == 0,
            30,
            "the port holder to listen",
        )
        systemd.install_hive(
            config,
            dropin=BASE_DROPIN + "[Unit]\nStartLimitIntervalSec=300\nStartLimitBurst=3\n",
        )
        assert systemd.systemctl("start", HIVE_UNIT, check=False).returncode != 0
        props = systemd.wait_state(HIVE_UNIT, "failed")
    finally:
        systemd.systemctl("stop", "port-holder", check=False)
    journal = unit_journal(systemd)
    # As many runs as the burst allows, each refused with the reason; the next start is
    # refused by systemd itself, and the unit stays failed (not activating again).
    assert journal.count("Main process exited, code=exited, status=2/INVALIDARGUMENT") == 3
    reason = f"dashboard: cannot listen on 127.0.0.1:{PORT}: Address already in use"
    assert journal.count(reason) == 3, journal
    assert journal.endswith(
        "hive-supervisor.service: Start request repeated too quickly.\n"
        "hive-supervisor.service: Failed with result 'exit-code'.\n"
        "Failed to start hive-supervisor.service - hive supervisor: a fleet of AI coding "
        "agents.\n"
    ), journal
    assert props["NRestarts"] == "3"
    assert systemd.show(HIVE_UNIT, "ActiveState")["ActiveState"] == "failed"


SLEEPER = """
[[agent]]
name = "sleeper"
[[agent.script]]
do = [
    {op = "set_status", text = "in turn {turn}"},
    {op = "sleep", seconds = 600, times = 1},
    {op = "reply", body = "done with: {body}"},
]
"""


def test_systemctl_stop_is_clean_cancels_turns_and_keeps_messages(
    systemd: BootedSystemd,
) -> None:
    start_hive(systemd, config=CONFIG + SLEEPER)
    msg_id = admin(systemd, "send", to="sleeper", body="take your time")["id"]
    wait_until(
        lambda: admin(systemd, "status", name="sleeper")["status_text"].startswith("in turn"),
        60,
        "the sleeper's turn to start",
    )
    systemd.systemctl("stop", HIVE_UNIT)  # returns once the unit is stopped
    props = systemd.show(HIVE_UNIT, "ActiveState", "Result", "ExecMainStatus")
    # Stopped by its own exit 0 after SIGTERM: not a timeout, not SIGKILL (status 9 or 15).
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    journal = unit_journal(systemd)
    assert "received signal SIGTERM" in journal
    assert "hive-supervisor.service: Deactivated successfully." in journal
    assert "timed out" not in journal and "Killing process" not in journal
    # Started again: the cut turn is on record as cancelled and the message was kept; the
    # sleeper gets it again and this time answers.
    systemd.systemctl("start", HIVE_UNIT)
    [first, *_] = reversed(turns(systemd, "sleeper"))
    assert first["message_ids"] == [msg_id]
    assert first["exit_class"] == "cancelled", first
    wait_until(
        lambda: {m["id"]: m["state"] for m in messages(systemd, "sleeper")}[msg_id] == "delivered",
        60,
        "the kept message to be delivered",
    )
    assert "done with: take your time" in [m["body"] for m in messages(systemd, "operator")]


def hivectl_as(sd: BootedSystemd, user: str, *args: str) -> Any:
    """hivectl run by ``user`` in the namespace, with Debian's python3 (the tests' own
    interpreter lives under /root, which other users cannot enter) and this checkout."""
    site = sysconfig.get_paths()["purelib"]  # the running venv's: hive's dependencies
    return sd.run(
        "/usr/bin/python3", "-m", "hive.cli.hivectl", "--socket", "/run/hive/admin.sock", *args,
        user=user, check=False, env={"PYTHONPATH": f"{REPO}:{site}"},
    )  # fmt: skip


def test_the_admin_group_may_use_hivectl_and_others_are_refused_by_the_socket(
    systemd: BootedSystemd,
) -> None:
    start_hive(systemd)
    systemd.add_user("hive-op", groups=["hive-admin"])
    systemd.add_user("hive-outsider")
    listed = hivectl_as(systemd, "hive-op", "list")
    assert listed.returncode == 0, listed.stderr
    assert {"manager", "worker", "src1", "src2"} <= set(listed.stdout.split())
    refused = hivectl_as(systemd, "hive-outsider", "list")
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr, refused.stderr
    # The socket's own permissions do it: group hive-admin, no access for others.
    sock = systemd.path("/run/hive/admin.sock").stat()
    assert oct(sock.st_mode & 0o777) == "0o660"
    assert systemd.run("stat", "-c", "%G", "/run/hive/admin.sock").stdout.strip() == "hive-admin"


def test_the_nix_units_kept_runtime_dir_serves_again_after_stop_and_kill(
    systemd: BootedSystemd,
) -> None:
    # The NixOS module's unit is this one plus RuntimeDirectoryPreserve=yes (its containers
    # bind /run/hive/agents), so a restarted daemon finds last run's sockets in place.
    before = start_hive(systemd, "RuntimeDirectoryPreserve=yes\n")
    systemd.systemctl("stop", HIVE_UNIT)
    assert systemd.path("/run/hive/agents").is_dir()
    systemd.systemctl("start", HIVE_UNIT)
    pid = systemd.show(HIVE_UNIT, "MainPID")["MainPID"]
    systemd.run("kill", "-9", pid)
    restarted(systemd, pid)
    # Both times the new daemon took over the sockets: agents talk, turns run.
    with SyncClient(agent_socket(systemd, "src1"), timeout=30) as c:
        msg_id = c.call("send", to="worker", body="through a kept socket dir")["id"]
    wait_delivered(systemd, [msg_id])
    assert before["MainPID"] != pid
