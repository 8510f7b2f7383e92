"""A power cut loses no acknowledged message.

kill -9 alone cannot show this: a killed process leaves its writes in the kernel's page
cache, which reaches the disk anyway, so the kill -9 tests pass even when SQLite never
fsyncs. Here the supervisor runs on tests/powerloss_vfs.py, a VFS that keeps every
unsynced write inside the process: SIGKILL then loses exactly what a power cut would, and
the real files hold only what was fsynced.

- the default (``synchronous = FULL``): every acknowledged message is on disk after the cut;
- the control (``NORMAL``, which in WAL mode syncs only at checkpoints): acknowledged
  messages are lost, which proves the VFS really drops unsynced writes;
- the VFS alone, on a plain SQLite database in a process killed mid-way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import pytest

from hive.client import ConnectionLost, HiveError
from tests.hive_harness import DAEMON_MODULE, RunningHive, wait_until

REPO = Path(__file__).resolve().parent.parent
POWERLOSS_DAEMON = "tests.powerloss_daemon"
SENDERS = ("src1", "src2", "src3")
PARKED = "parked"  # paused: what it is sent stays pending
CUTS = 3  # power cuts in a row, each on what the last one left
ACKS_PER_CUT = 1000  # acknowledged sends, over all senders, before a cut
MORE_ACKS = 50  # control: sent after a cut point that happened to lose nothing
MAX_SENDS = 20_000  # per sender: a bound if the daemon never gets cut
SEND_DEADLINE = 40.0  # seconds

CONFIG = """
[hive]
sqlite_synchronous = "{synchronous}"
# src3 floods the operator's mailbox: its caps (0: none) would refuse sends, not lose them.
operator_mailbox_cap = 0
operator_mailbox_bytes = 0
operator_mail_per_sender = 0

[[agent]]
name = "src1"
rate_limit_per_minute = 10000000

[[agent]]
name = "src2"
rate_limit_per_minute = 10000000

[[agent]]
name = "src3"
rate_limit_per_minute = 10000000

[[agent]]
name = "parked"
inbox_cap = 1000000
"""


@dataclass
class Acks:
    """Every send the daemon acknowledged: id -> (recipient, body). Filled by the senders."""

    label: str  # starts every body, so bodies differ from one cut to the next
    by_id: dict[int, tuple[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)  # refusals: none are expected

    def add(self, msg_id: int, to: str, body: str) -> None:
        with self.lock:
            self.by_id[msg_id] = (to, body)

    def count(self) -> int:
        with self.lock:
            return len(self.by_id)

    def snapshot(self) -> dict[int, tuple[str, str]]:
        with self.lock:
            return dict(self.by_id)


def send_until_cut(hive: RunningHive, name: str, to: str, acks: Acks) -> None:
    """Send as fast as one connection can, recording each acknowledged id, until the
    daemon dies under us (or the bounds run out)."""
    deadline = time.monotonic() + SEND_DEADLINE
    try:
        with hive.agent(name, timeout=SEND_DEADLINE) as conn:
            for i in range(MAX_SENDS):
                if acks.stop.is_set() or time.monotonic() > deadline:
                    return
                body = f"{acks.label}: {name}->{to} #{i}"
                acks.add(conn.call("send", to=to, body=body)["id"], to, body)
    except (ConnectionLost, OSError):
        pass  # cut mid-send: that send was never acknowledged, whether stored or not
    except HiveError as exc:
        acks.errors.append(f"{name}: {exc}")


def start_senders(hive: RunningHive, acks: Acks) -> list[threading.Thread]:
    # Two into the paused agent's inbox (they stay pending), one to the operator's mailbox.
    targets = {"src1": PARKED, "src2": PARKED, "src3": "operator"}
    threads = [
        threading.Thread(target=send_until_cut, args=(hive, name, targets[name], acks))
        for name in SENDERS
    ]
    for t in threads:
        t.start()
    return threads


def start_powerloss_hive(root: Path, synchronous: str) -> RunningHive:
    hive = RunningHive.start(
        root,
        CONFIG.format(synchronous=synchronous),
        env={"PYTHONPATH": str(REPO)},
        module=POWERLOSS_DAEMON,
    )
    hive.admin("pause", names=[PARKED])
    return hive


@pytest.fixture
def hives() -> Iterator[list[RunningHive]]:
    started: list[RunningHive] = []
    yield started
    for hive in started:
        if hive.process.poll() is None:
            os.kill(hive.process.pid, signal.SIGCONT)  # in case a failure left it stopped
            hive.terminate()


def freeze(hive: RunningHive) -> None:
    """SIGSTOP: from here on the daemon writes and syncs nothing, so what the real files
    hold now is what a power cut at this instant would leave."""
    os.kill(hive.process.pid, signal.SIGSTOP)


def thaw(hive: RunningHive) -> None:
    os.kill(hive.process.pid, signal.SIGCONT)


def on_disk(state_dir: Path, scratch: Path) -> dict[int, tuple[str, str]]:
    """The messages a fresh process finds in the real files: db and -wal copied (without
    the -shm, as after a reboot) and opened with SQLite's own VFS, which replays the WAL."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for suffix in ("", "-wal"):
        src = state_dir / f"hive.db{suffix}"
        if src.exists():
            shutil.copyfile(src, scratch / f"hive.db{suffix}")
    conn = apsw.Connection(str(scratch / "hive.db"), flags=apsw.SQLITE_OPEN_READONLY, vfs="unix")
    try:
        rows = conn.execute("SELECT id, recipient, body FROM messages").fetchall()
    except apsw.SQLError:
        rows = []  # not even the schema was synced
    finally:
        conn.close()
    return {int(str(i)): (str(to), str(body)) for i, to, body in rows}


def lost(acked: dict[int, tuple[str, str]], stored: dict[int, tuple[str, str]]) -> list[int]:
    """Acknowledged ids missing from the disk, or stored with another recipient or body."""
    return sorted(i for i, sent in acked.items() if stored.get(i) != sent)


def cut_while_sending(hive: RunningHive, label: str, enough: int) -> dict[int, tuple[str, str]]:
    """Let the senders run until ``enough`` acks, then cut the power while all three have
    a send in flight; return what was acknowledged before the cut."""
    acks = Acks(label)
    senders = start_senders(hive, acks)
    wait_until(lambda: acks.count() >= enough, timeout=SEND_DEADLINE, what="acks")
    freeze(hive)
    acked = acks.snapshot()
    hive.kill()
    for t in senders:
        t.join(SEND_DEADLINE)
    assert not acks.errors
    return acked


def test_power_cuts_lose_no_acknowledged_message(tmp_path: Path, hives: list[RunningHive]) -> None:
    hive = start_powerloss_hive(tmp_path / "hive", "FULL")
    hives.append(hive)
    acked: dict[int, tuple[str, str]] = {}
    stored: dict[int, tuple[str, str]] = {}
    for cut in range(CUTS):
        if cut:  # back up on what the last cut left, on the same lossy disk
            hive.restart()
            assert hive.status(PARKED)["paused"], "the pause was acknowledged before any cut"
        acked |= cut_while_sending(hive, f"cut {cut}", ACKS_PER_CUT)
        stored = on_disk(hive.state_dir, tmp_path / f"after-cut-{cut}")
        missing = lost(acked, stored)
        assert not missing, (
            f"cut {cut}: {len(missing)} of {len(acked)} acknowledged messages lost: {missing[:5]}"
        )

    # The real daemon (no special VFS) starts on what the cuts left and counts the inbox:
    # every acknowledged message to the paused agent, and any stored whose ack was cut.
    hive.module = DAEMON_MODULE
    hive.restart()
    pending = sum(1 for to, _ in stored.values() if to == PARKED)
    assert pending >= sum(1 for to, _ in acked.values() if to == PARKED)
    status = hive.status(PARKED)
    assert status["paused"]
    assert status["inbox_depth"] == pending


def test_control_synchronous_normal_loses_acknowledged_messages(
    tmp_path: Path, hives: list[RunningHive]
) -> None:
    """The test above can fail: with WAL and synchronous=NORMAL, what was committed since
    the last checkpoint is acknowledged but not yet fsynced, and the cut takes it."""
    hive = start_powerloss_hive(tmp_path / "hive", "NORMAL")
    hives.append(hive)
    acks = Acks("control")
    senders = start_senders(hive, acks)
    target = ACKS_PER_CUT
    missing: list[int] = []
    deadline = time.monotonic() + SEND_DEADLINE
    while not missing:
        # Frozen just after a checkpoint, the disk would lack nothing: then thaw, let a few
        # more be acknowledged, and look again. Frozen, the daemon cannot change the disk
        # while we look, so the kill below cuts exactly what we saw.
        assert time.monotonic() < deadline, "NORMAL never left an acknowledged send unsynced"
        wait_until(lambda: acks.count() >= target, timeout=SEND_DEADLINE, what="acks")  # noqa: B023
        freeze(hive)
        acked = acks.snapshot()
        missing = lost(acked, on_disk(hive.state_dir, tmp_path / "after-cut"))
        if not missing:
            thaw(hive)
            target = len(acked) + MORE_ACKS
    hive.kill()
    acks.stop.set()
    for t in senders:
        t.join(SEND_DEADLINE)
    assert not acks.errors
    assert missing  # what the power cut took from the acknowledged messages


# --- the VFS alone -------------------------------------------------------------------------

WRITER = """
import os, signal, sys
import apsw
from tests import powerloss_vfs

powerloss_vfs.install()
path, journal_mode, synchronous = sys.argv[1:4]
conn = apsw.Connection(path)
conn.execute(f"PRAGMA journal_mode={journal_mode}")
conn.execute("CREATE TABLE t (n INTEGER)")  # under the default FULL: on disk
conn.execute(f"PRAGMA synchronous={synchronous}")
for n in range(200):
    conn.execute("INSERT INTO t VALUES (?)", (n,))  # one commit each
print(conn.execute("SELECT count(*) FROM t").fetchall()[0][0], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the power cut
"""


def rows_after_cut(tmp_path: Path, journal_mode: str, synchronous: str) -> tuple[int, int]:
    """(rows the writer saw committed, rows on disk after its power cut)."""
    db = tmp_path / "t.db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(db), journal_mode, synchronous],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (tmp_path / "t.db-shm").unlink(missing_ok=True)  # a reboot: no shared memory survives
    conn = apsw.Connection(str(db), vfs="unix")
    try:
        survived = conn.execute("SELECT count(*) FROM t").fetchall()[0][0]
        return int(proc.stdout), int(str(survived))
    finally:
        conn.close()


@pytest.mark.parametrize("journal_mode", ["WAL", "DELETE"])
def test_vfs_keeps_synced_commits(tmp_path: Path, journal_mode: str) -> None:
    committed, survived = rows_after_cut(tmp_path, journal_mode, "FULL")
    assert committed == survived == 200


@pytest.mark.parametrize("journal_mode", ["WAL", "DELETE"])
def test_vfs_drops_unsynced_commits(tmp_path: Path, journal_mode: str) -> None:
    committed, survived = rows_after_cut(tmp_path, journal_mode, "OFF")
    assert committed == 200
    assert survived == 0  # nothing after the synced CREATE TABLE reached the disk
