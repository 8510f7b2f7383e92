"""Attacks by running the supervisor out of resources: its disk fills up, it has no file
descriptors left. The promises: an acknowledged message is never lost; a request that cannot
be served gets a clear error, not an ack, a hang, a crash loop or a spinning CPU; the daemon
serves again, without a restart, once the resource is back.

The disk is a tmpfs of a few MiB, mounted on the state dir inside a mount namespace of the
daemon's own (tests/smallfs_daemon.py): nothing is mounted on the host. The test reaches the
files there through /proc/PID/root, and the sockets live on the host's file system.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import apsw
import pytest

from hive.client import HiveError, SyncClient
from tests.hive_harness import RunningHive, wait_until

SMALL_FS_KIB = 4096
# A database written by the first schema: any later hive migrates it (after a backup).
UPGRADE_FIXTURE = Path(__file__).parent / "fixtures" / "upgrade" / "v1"


class SmallFsHive(RunningHive):
    """A RunningHive whose state dir is the daemon's private tmpfs (tests/smallfs_daemon)."""

    @property
    def state_dir(self) -> Path:
        # The state dir as the daemon sees it, from outside its mount namespace.
        return Path(f"/proc/{self.process.pid}/root{self.root / 'state'}")

    @property
    def admin_path(self) -> Path:
        return self.root / "run" / "admin.sock"

    def agent_socket(self, name: str) -> Path:
        return self.root / "run" / "agents" / f"{name}.sock"

    @property
    def filler(self) -> Path:
        return self.state_dir / "filler"

    def db(self) -> apsw.Connection:
        """A copy of the database file and its WAL, as they are now (SQLite resolves the
        /proc/PID/root link to the host's path, where the state dir is empty, so the files
        are copied out; without the -shm SQLite replays the WAL, as after a crash)."""
        copy = self.root / "db-copy"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        for name in ("hive.db", "hive.db-wal"):
            if (self.state_dir / name).exists():
                shutil.copyfile(self.state_dir / name, copy / name)
        return apsw.Connection(str(copy / "hive.db"))


@pytest.fixture
def small_fs_hive(tmp_path: Path) -> Iterator[Any]:
    started: list[SmallFsHive] = []

    def start(config: str) -> SmallFsHive:
        root = tmp_path / "hive"
        env = {"HIVE_TEST_SMALLFS_KIB": str(SMALL_FS_KIB), "HIVE_TEST_RUN_DIR": str(root / "run")}
        hive = SmallFsHive.start(root, config, env, module="tests.smallfs_daemon")
        assert isinstance(hive, SmallFsHive)
        started.append(hive)
        return hive

    yield start
    for hive in started:
        if hive.process.poll() is None:
            hive.terminate()


def fill_disk(hive: SmallFsHive) -> list[int]:
    """Fill the state dir's file system until the database refuses a commit; the ids of the
    probe messages the daemon still acknowledged on the way (SQLite can reuse room it already
    has in its files, so the first commits after the filler may still succeed)."""
    fd = os.open(hive.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(SMALL_FS_KIB * 2):  # bounded: twice what the file system holds
            os.write(fd, b"\0" * 1024)
        raise AssertionError("the small file system never filled up")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    acked: list[int] = []
    with hive.agent("probe") as probe:
        for i in range(2000):
            try:
                acked.append(probe.call("send", to="sink", body=f"probe {i} " + "p" * 2000)["id"])
            except HiveError as exc:
                assert exc.code == "store_failed", exc
                return acked
    raise AssertionError("the database kept committing on a full disk")


def free_disk(hive: SmallFsHive) -> None:
    hive.filler.unlink()


def db_messages(hive: SmallFsHive, recipient: str) -> dict[int, tuple[str, str]]:
    """id -> (body, state) of every message to ``recipient`` in the database file."""
    with hive.db() as db:
        rows = db.execute("SELECT id, body, state FROM messages WHERE recipient = ?", (recipient,))
        return {int(i): (str(body), str(state)) for i, body, state in rows}


# A sender and a recipient paused to hold everything sent: the mail the disk tests count.
MAIL_AGENTS = """
[[agent]]
name = "manager"

[[agent]]
name = "probe"
rate_limit_per_minute = 1000000

[[agent]]
name = "sink"
inbox_cap = 100000
"""

DISK_CONFIG = "[hive]\nbackoff_initial = 0.5\n" + MAIL_AGENTS


def test_a_full_disk_refuses_sends_with_store_failed_and_loses_nothing_acked(
    small_fs_hive: Any,
) -> None:
    hive: SmallFsHive = small_fs_hive(DISK_CONFIG)
    hive.admin("pause", names=["sink"])
    acked: dict[int, str] = {}
    with hive.agent("manager") as manager:
        for i in range(20):
            acked[manager.call("send", to="sink", body=f"before {i}")["id"]] = f"before {i}"
    probes = fill_disk(hive)
    refused = 0
    with hive.agent("manager") as manager:
        for i in range(50):
            body = f"full {i}"
            try:
                acked[manager.call("send", to="sink", body=body)["id"]] = body
            except HiveError as exc:
                assert exc.code == "store_failed", exc
                assert "full" in exc.message, exc.message  # says why
                refused += 1
    assert refused == 50, "a send was acknowledged on a disk that refused the probe's"
    # One traceback for the episode, not one per refused commit (the journal may well be
    # on the disk that is full).
    log = hive.log_path.read_text(errors="replace")
    assert log.count("store: commit of") == 1 and log.count("FullError") == 1, log[-3000:]
    # Reads and status are served while the disk is full; the daemon lives.
    owed = len(acked) + len(probes)
    hive.wait_until(lambda: hive.status("sink")["inbox_depth"] == owed, what="sink's depth")
    assert hive.admin("version")
    assert len(hive.messages("sink")) == len(acked) + len(probes)
    free_disk(hive)
    # Sends work again without a restart.
    with hive.agent("manager") as manager:
        after = manager.call("send", to="sink", body="after")["id"]
        acked[after] = "after"
    stored = db_messages(hive, "sink")
    for msg_id, body in acked.items():
        assert stored.get(msg_id) == (body, "pending"), f"acknowledged message {msg_id} lost"
    owed = len(acked) + len(probes)
    hive.wait_until(lambda: hive.status("sink")["inbox_depth"] == owed, what="sink's depth")
    assert hive.terminate() == 0


def start_on_small_fs(
    root: Path, kib: int, seed: Path, config: Path, **flags: str
) -> subprocess.CompletedProcess[str]:
    """Run hive-supervisor (tests.smallfs_daemon) once on a ``kib`` KiB file system for its
    state dir ``root/state``, seeded from ``seed``; ``flags`` are the daemon's other
    HIVE_TEST_SMALLFS_* switches (FILL, LIST). Its run dir is ``root/run``, on the host."""
    env = {
        **os.environ,
        "HIVE_TEST_SMALLFS_KIB": str(kib),
        "HIVE_TEST_RUN_DIR": str(root / "run"),
        "HIVE_TEST_SMALLFS_SEED": str(seed),
        **{f"HIVE_TEST_SMALLFS_{name}": value for name, value in flags.items()},
    }
    argv = ["--config", str(config), "--state-dir", str(root / "state"), "--no-dashboard"]
    return subprocess.run(
        [sys.executable, "-m", "tests.smallfs_daemon", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_start_on_a_full_disk_is_refused_with_one_line(tmp_path: Path, make_hive: Any) -> None:
    """Started on a full disk, the daemon died with a traceback ending in SQLite's "disk I/O
    error" (the database's shared-memory index could not be made), exit code 1, which
    systemd restarts. Now the pre-flight check refuses it: exit 2, one line naming the
    state dir and what to do, before any socket exists."""
    seeded = make_hive(DISK_CONFIG)  # a hive that ran before: its state dir has a db
    with seeded.agent("manager") as manager:
        manager.call("send", to="sink", body="kept")
    assert seeded.terminate() == 0
    root = tmp_path / "full"
    root.mkdir()
    done = start_on_small_fs(root, SMALL_FS_KIB, seeded.state_dir, seeded.config_path, FILL="1")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "KiB free on its file system" in line and "free some space" in line, line
    assert not (root / "run" / "admin.sock").exists()


def test_an_upgrade_without_room_for_its_backup_leaves_no_partial_backup(tmp_path: Path) -> None:
    """The copy made before a migration failed half-way on a full disk and stayed behind,
    named like a good backup (hive.db.vN-....bak): the one file an operator would restore.
    The daemon died with a traceback. Now the partial copy is removed, nothing is migrated,
    and the start stops with one line."""
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copyfile(UPGRADE_FIXTURE / "hive.db", seed / "hive.db")
    with apsw.Connection(str(seed / "hive.db")) as db:  # bigger than the room left
        db.execute("CREATE TABLE ballast(b BLOB)")
        for _ in range(48):
            db.execute("INSERT INTO ballast VALUES (zeroblob(65536))")
    db_kib = (seed / "hive.db").stat().st_size // 1024
    root = tmp_path / "up"
    root.mkdir()
    kib = db_kib + 1536  # over the pre-flight's 1 MiB free
    done = start_on_small_fs(root, kib, seed, UPGRADE_FIXTURE / "hive.toml", LIST="1")
    lines = done.stderr.strip().splitlines()
    [listing] = [line for line in lines if line.startswith("smallfs files: ")]
    files = listing.split()[2:]
    assert "hive.db" in files, listing
    assert not [f for f in files if f.endswith(".bak")], f"a partial backup was left: {files}"
    assert done.returncode == 2, done.stderr
    refusal = [line for line in lines if line.startswith("hive-supervisor: ")]
    assert len(refusal) == 1 and "could not back up" in refusal[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


STDERR_CONFIG = """
[hive]
backoff_initial = 0.5
backoff_max = 2

[[agent]]
name = "manager"

[[agent]]
name = "bob"
[[agent.script]]
match = "*"
# Once (a step with `times` is counted on disk before it runs, skipped after): 8 MB of
# stderr into agent.log, twice what the file system holds.
do = [{op = "stderr", text = "%s\\n", repeat = 8000, times = 1}]
""" % ("noise " * 160)


def test_agent_stderr_that_fills_the_disk_costs_log_lines_not_a_crash(
    small_fs_hive: Any,
) -> None:
    """agent.log is written by the supervisor; a write that failed with ENOSPC used to end
    the process's output readers, so the turn was a crash (and the next turn, and the next:
    a full disk put every agent that wrote to stderr into crash watch and then `failed`)."""
    hive: SmallFsHive = small_fs_hive(STDERR_CONFIG)
    with hive.agent("manager") as manager:
        msg_id = manager.call("send", to="bob", body="work")["id"]
    log = hive.state_dir / "agents" / "bob" / "agent.log"
    # The turn filled the disk with its stderr; its end could not be stored, so it is
    # given again after a back-off (not at once: see the next test).
    backing_off = hive.wait_until(
        lambda: (s := hive.status("bob"))["retry_at"] is not None and s, what="bob to back off"
    )
    assert backing_off["crashes_in_window"] == 0, "the full disk made bob's turn a crash"
    # Its one turn ran to its end (not cut when its log could not be written).
    assert backing_off["last_turn"]["exit_class"] == "ok", backing_off["last_turn"]
    assert "not writing" in hive.log_path.read_text(errors="replace")
    log.unlink()  # what an operator does: remove what filled the disk
    hive.wait_until(
        lambda: db_messages(hive, "bob").get(msg_id, ("", ""))[1] == "delivered",
        what="bob's message to be delivered once the disk has room",
    )
    status = hive.status("bob")
    assert status["crashes_in_window"] == 0 and not status["failed"], status
    assert status["last_turn"]["exit_class"] == "ok"


IDLE_CONFIG = (
    "[hive]\nbackoff_initial = 0.5\nbackoff_max = 2\n"
    + MAIL_AGENTS
    + """
[[agent]]
name = "bob"
[[agent.script]]
match = "never in a body"
do = [{op = "text", text = "unreachable"}]
"""
)


def test_a_turn_whose_end_cannot_be_stored_is_retried_after_a_back_off(
    small_fs_hive: Any,
) -> None:
    """A clean turn whose delivered marks could not commit gave its messages back, and they
    started the next turn at once: on a full disk, turn after turn without a pause (a core
    spinning on process starts; with claude, a model paid for each), for as long as the
    disk stayed full. Now the retry backs off like a crash's, without counting as one."""
    hive: SmallFsHive = small_fs_hive(IDLE_CONFIG)
    hive.admin("pause", names=["bob", "sink"])
    with hive.agent("manager") as manager:
        msg_id = manager.call("send", to="bob", body="hello")["id"]
    fill_disk(hive)
    hive.admin("resume", names=["bob"])
    backing_off = hive.wait_until(
        lambda: (s := hive.status("bob"))["retry_at"] is not None and s,
        what="bob to back off instead of starting turn after turn",
    )
    assert backing_off["crashes_in_window"] == 0
    assert db_messages(hive, "bob")[msg_id][1] == "pending"
    free_disk(hive)
    hive.wait_until(
        lambda: db_messages(hive, "bob")[msg_id][1] == "delivered",
        what="the message to be delivered once the disk has room",
    )
    assert hive.status("bob")["crashes_in_window"] == 0


# --- file descriptors -------------------------------------------------------------------

FD_CONFIG = """
[hive]
max_agent_connections = 100000
max_admin_connections = 100000
backoff_initial = 0.2
backoff_max = 1
restart_intensity = 2

[[agent]]
name = "manager"

[[agent]]
name = "bob"
[[agent.script]]
match = "*"
do = [{op = "reply", body = "got {body}"}]
"""
FD_LIMIT = 128
IDLE_CLIENTS = FD_LIMIT + 100  # more than the daemon has fds for: the rest wait in the backlog


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def whoami(hive: RunningHive, name: str) -> Any:
    with hive.agent(name) as client:
        return client.call("whoami")


def thread_ids(pid: int) -> set[str]:
    return set(os.listdir(f"/proc/{pid}/task"))


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return sock


def test_out_of_fds_old_clients_are_served_turns_wait_and_all_comes_back(
    make_hive: Any,
) -> None:
    """The daemon gets fewer fds than clients connect. accept() backs off (no spinning
    core); the clients it already serves keep working; a turn it has no fds to start
    waits with a `no_resources` event (it used to count as the agent's crash: restart
    intensity was passed and bob marked `failed`, and stayed so once the fds were back);
    once the idle clients go, new ones get in, bob's turn runs, nothing acked is lost."""
    hive: RunningHive = make_hive(FD_CONFIG)
    hive.admin("pause", names=["manager"])  # only bob's turns need fds
    with ExitStack() as stack:
        admin = stack.enter_context(SyncClient(hive.admin_path, timeout=30))
        manager = stack.enter_context(hive.agent("manager", timeout=30))
        assert admin.call("events", agent="bob")  # a read: the dashboard reads all the time
        threads = thread_ids(hive.process.pid)
        resource.prlimit(hive.process.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        with ExitStack() as idle:
            for _ in range(IDLE_CLIENTS):
                idle.enter_context(closing(connect(hive.agent_socket("manager"))))
            hive.wait_until(
                lambda: "accept failed" in hive.log_path.read_text(errors="replace"),
                what="the daemon to run out of fds",
            )
            # Out of fds: no core spins on accept() (a busy loop would use ~1 s of CPU a
            # second; backing off, it uses next to none).
            before, since = cpu_seconds(hive.process.pid), time.monotonic()
            time.sleep(2)  # a measuring window, not a synchronisation
            used = cpu_seconds(hive.process.pid) - before
            assert used < 0.5 * (time.monotonic() - since), f"{used:.2f} s of CPU while idle"
            # Reads are answered, also once the worker thread that read before has ended
            # (trio ends one idle for 10 s; a read used to open a connection for each
            # thread, and got "unable to open database file" here).
            wait_until(
                lambda: not threads <= thread_ids(hive.process.pid),
                what="the reading worker thread to end",
            )
            wait_until(  # what it held is taken by clients from the backlog again
                lambda: len(os.listdir(f"/proc/{hive.process.pid}/fd")) >= FD_LIMIT,
                what="every fd to be in use again",
            )
            assert admin.call("events", agent="bob")["events"] is not None
            # The clients it serves keep working: sends are acknowledged.
            acked = [manager.call("send", to="bob", body=f"m{i}")["id"] for i in range(5)]
            assert admin.call("version")
            # bob's turn cannot start (no fds for its pipes): it waits, not a crash.
            waiting = wait_until(
                lambda: (s := admin.call("status", name="bob"))["retry_at"] is not None and s,
                what="bob's turn to fail to start",
            )
            assert waiting["crashes_in_window"] == 0 and not waiting["failed"], waiting
            assert waiting["turn_state"] == "idle" and waiting["turn_id"] is None, waiting
            kinds = [e["kind"] for e in admin.call("events", agent="bob")["events"]]
            assert "no_resources" in kinds and "crash" not in kinds, kinds
            # Several retries while the fds stay short: still waiting, never failed.
            wait_until(
                lambda: (
                    sum(
                        e["kind"] == "no_resources"
                        for e in admin.call("events", agent="bob")["events"]
                    )
                    > 3
                ),
                what="bob to retry a few times",
            )
            assert not admin.call("status", name="bob")["failed"]
            # Each retry is one line in the log, not a traceback.
            assert "Traceback" not in hive.log_path.read_text(errors="replace")
        # The idle clients went: new connections get in, bob's turn runs.
        hive.wait_until(lambda: whoami(hive, "manager"), what="a new client to be served")
        hive.wait_until(lambda: hive.status("bob")["inbox_depth"] == 0, what="bob's turn to run")
        with hive.db() as db:
            states = dict(db.execute("SELECT id, state FROM messages WHERE recipient = 'bob'"))
        assert all(states.get(i) == "delivered" for i in acked), states
        assert not hive.status("bob")["failed"]


def test_out_of_fds_the_dashboard_does_not_flood_the_log(tmp_path: Path) -> None:
    """hypercorn's accept loop (trio.serve_listeners) logged an error with a traceback
    every 0.1 s while the daemon had no fd left: ~90 lines a second into the journal for
    as long as it lasted. Now one line a minute, without the traceback."""
    from tests.ui_harness import free_port

    hive = RunningHive.start(tmp_path / "hive", FD_CONFIG, dashboard_port=free_port())
    assert hive.dashboard_port is not None
    try:
        resource.prlimit(hive.process.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        with ExitStack() as idle:
            for _ in range(IDLE_CLIENTS):
                idle.enter_context(closing(connect(hive.agent_socket("manager"))))
            hive.wait_until(
                lambda: "accept failed" in hive.log_path.read_text(errors="replace"),
                what="the daemon to run out of fds",
            )
            for _ in range(3):  # they wait in the dashboard's backlog: accept() fails
                idle.enter_context(
                    closing(socket.create_connection(("127.0.0.1", hive.dashboard_port), 30))
                )
            hive.wait_until(
                lambda: "trio.serve_listeners" in hive.log_path.read_text(errors="replace"),
                what="the dashboard's accept to fail",
            )
            time.sleep(2)  # a window to count its lines in, not a synchronisation
            lines = hive.log_path.read_text(errors="replace").splitlines()
            accept_lines = [line for line in lines if "trio.serve_listeners" in line]
            assert len(accept_lines) == 1, accept_lines[:5]
            assert not any(line.startswith("Traceback") for line in lines), "a traceback"
        hive.wait_until(lambda: hive.admin("version"), what="the admin socket")
    finally:
        hive.terminate()


def test_the_daemon_raises_a_low_soft_fd_limit_to_the_hard_one(tmp_path: Path) -> None:
    """From a shell the soft limit is often 1024 with a far higher hard one: the daemon ran
    with the soft one, and a few hundred agents ran it out of fds."""
    env = {"HIVE_TEST_NOFILE": "256:4096"}
    hive = RunningHive.start(tmp_path / "hive", FD_CONFIG, env, module="tests.lowfd_daemon")
    try:
        soft, hard = resource.prlimit(hive.process.pid, resource.RLIMIT_NOFILE)
        assert (soft, hard) == (4096, 4096)
        assert "raised the soft limit from 256 to 4096" in hive.log_path.read_text()
    finally:
        hive.terminate()


SILENT_CONFIG = """
[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""
SILENT_CLIENTS = 300  # against the default cap of 64 per agent socket


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_silent_connections_hold_no_more_fds_than_the_socket_cap(make_hive: Any) -> None:
    """A flood of connections that never send a byte (slowloris) on one agent socket: past
    `max_agent_connections` each gets `too_many_connections` and is closed, so the daemon
    holds at most the cap's worth of fds for them, and every other socket is served."""
    hive: RunningHive = make_hive(SILENT_CONFIG)
    pid = hive.process.pid
    before = fd_count(pid)
    with ExitStack() as silent:
        for _ in range(SILENT_CLIENTS):
            silent.enter_context(closing(connect(hive.agent_socket("bob"))))
        with closing(connect(hive.agent_socket("bob"))) as late:
            # Accepted after all the silent ones (the backlog is first come, first served).
            late.settimeout(30)
            assert b"too_many_connections" in late.recv(65536)
        # Every connection past the cap was answered and closed by the daemon.
        hive.wait_until(
            lambda: fd_count(pid) <= before + 64, what="the connections past the cap to close"
        )
        assert whoami(hive, "manager") and hive.admin("version")
    hive.wait_until(lambda: whoami(hive, "bob"), what="bob's socket to serve again")
    hive.wait_until(lambda: fd_count(pid) <= before + 2, what="the silent ones' fds to be freed")


def test_stderr_lines_a_full_disk_dropped_are_counted_in_the_log(tmp_path: Path) -> None:
    """StderrLog on a file that refuses writes (/dev/full: ENOSPC on every write) drops the
    lines without raising; once writes work, the next line is preceded by how many went."""
    import trio

    from hive.agentlog import StderrLog

    log_path = tmp_path / "bob" / "agent.log"
    log_path.parent.mkdir()
    out = StderrLog(log_path)
    out.journal = None  # agent.log, whatever the host runs
    out._file, out._file_tried = open("/dev/full", "a"), True  # noqa: SIM115

    async def write(lines: list[str]) -> None:
        for line in lines:
            await out.write(7, line)

    trio.run(write, ["lost 1", "lost 2", "lost 3"])
    assert out.unwritten == 3
    out._file.close()
    out._file = open(log_path, "a")  # noqa: SIM115 - room again
    trio.run(write, ["kept"])
    out.close()
    text = log_path.read_text().splitlines()
    assert text[0].endswith("hive: 3 lines of stderr could not be written here"), text
    assert text[1].endswith("turn=7 kept") and len(text) == 2, text


def test_the_disk_check_on_a_first_start_looks_where_the_state_dir_will_be(
    tmp_path: Path,
) -> None:
    """No state dir yet (a first start): the check reads its nearest existing parent's file
    system instead of failing with FileNotFoundError."""
    from hive.config import HiveConfig
    from hive.preflight import disk_space

    cfg = HiveConfig.from_toml_text("").with_overrides(state_dir=tmp_path / "not" / "yet")
    assert disk_space(cfg) == []
    assert not (tmp_path / "not").exists()
