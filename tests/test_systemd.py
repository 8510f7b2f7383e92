"""The systemd unit, its install command, and journald logging with an AGENT field."""

from __future__ import annotations

import array
import fcntl
import logging
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive.cli import install_systemd
from hive.journal import JournalHandler, journalctl_argv
from hive.systemd import UnitSettings, quote, render_unit


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: [section] -> (key, value) lines, comments skipped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def settings(**kw: object) -> UnitSettings:
    return UnitSettings(exec_start=("/opt/hive/bin/hive-supervisor",), **kw)  # type: ignore[arg-type]


def test_the_unit_is_a_watched_notify_service_with_a_start_limit() -> None:
    unit = unit_sections(render_unit(settings()))
    service = dict(unit["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"  # a refused hive.toml: no restarts
    assert service["ExecStart"] == (
        "/opt/hive/bin/hive-supervisor --config /etc/hive/hive.toml "
        "--state-dir /var/lib/hive --run-dir /run/hive"
    )
    assert (service["StateDirectory"], service["StateDirectoryMode"]) == ("hive", "0711")
    assert (service["RuntimeDirectory"], service["RuntimeDirectoryMode"]) == ("hive", "0711")
    assert service["KillMode"] == "mixed"
    assert service["EnvironmentFile"] == "-/etc/hive/env"
    assert dict(unit["Unit"])["StartLimitIntervalSec"] == "300"
    assert dict(unit["Unit"])["StartLimitBurst"] == "5"
    assert unit["Install"] == [("WantedBy", "multi-user.target")]


def test_dirs_outside_var_lib_and_run_are_not_claimed_by_systemd() -> None:
    unit = dict(unit_sections(render_unit(settings(state_dir=Path("/srv/hive"))))["Service"])
    assert "StateDirectory" not in unit
    assert "--state-dir /srv/hive" in unit["ExecStart"]


def test_arguments_and_environment_are_quoted_for_systemd() -> None:
    assert quote("/plain/path") == "/plain/path"
    assert quote("with space") == '"with space"'
    assert quote("100%") == "100%%"
    assert quote("$HOME") == "$$HOME"
    text = render_unit(settings(config=Path("/etc/my hive/hive.toml"), path=("/opt/claude/bin",)))
    service = dict(unit_sections(text)["Service"])
    assert '"/etc/my hive/hive.toml"' in service["ExecStart"]
    assert service["Environment"] == "PATH=/opt/claude/bin:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture
def hive_toml(tmp_path: Path) -> Path:
    path = tmp_path / "hive.toml"
    path.write_text('[hive]\nadmin_group = "hive-admin"\n\n[[agent]]\nname = "manager"\n')
    return path


def test_install_writes_the_unit_and_state_dir_under_a_prefix(
    hive_toml: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "root"
    cmd = [sys.executable, "-m", "hive.cli.install_systemd", "--config", str(hive_toml)]
    out = subprocess.run(
        [*cmd, "--prefix", str(prefix), "--exec", "/opt/hive/bin/hive-supervisor"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    unit = prefix / "etc/systemd/system/hive-supervisor.service"
    assert unit.read_text() == render_unit(settings(config=hive_toml.resolve()))
    assert (unit.stat().st_mode & 0o777) == 0o644
    state = prefix / "var/lib/hive"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o711
    assert f"did write {unit}" in out
    assert "not creating group hive-admin on this host (--prefix)" in out
    assert "systemctl daemon-reload && systemctl enable --now hive-supervisor.service" in out


def test_dry_run_changes_nothing(
    hive_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "root"
    code = install_systemd.main(["--config", str(hive_toml), "--prefix", str(prefix), "--dry-run"])
    assert code == 0
    assert not prefix.exists()
    out = capsys.readouterr().out
    assert "would write" in out and "would create" in out


def test_install_refuses_a_config_the_supervisor_would_reject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "hive.toml"
    bad.write_text('[[agent]]\nname = "bob"\nsandbox = "docker"\n')
    assert install_systemd.main(["--config", str(bad), "--dry-run"]) == 2
    assert "'sandbox' must be one of" in capsys.readouterr().err


def test_install_advises_on_a_missing_admin_group_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "hive.toml"
    cfg.write_text("")
    assert install_systemd.main(["--config", str(cfg), "--dry-run"]) == 0
    assert 'set admin_group = "hive-admin" under [hive]' in capsys.readouterr().out


# -- journald ---------------------------------------------------------------------------


def parse_native(payload: bytes) -> dict[str, str]:
    """Decode the journal's native protocol (the reader's side of hive.journal)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(payload):
        nl = payload.index(b"\n", i)
        line = payload[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", payload[nl + 1 : nl + 9])
            start = nl + 9
            fields[line.decode()] = payload[start : start + size].decode()
            assert payload[start + size : start + size + 1] == b"\n"
            i = start + size + 1
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, JournalHandler, logging.Logger]]:
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    handler = JournalHandler(path, identifier="hive-test")
    log = logging.getLogger(f"hive.test.{tmp_path.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield server, handler, log
    log.removeHandler(handler)
    handler.close()
    server.close()


def test_a_record_carries_the_agent_field(
    journal: tuple[socket.socket, JournalHandler, logging.Logger],
) -> None:
    server, _, log = journal
    logging.LoggerAdapter(log, {"agent": "bob"}).warning("turn %d crashed", 7)
    fields = parse_native(server.recv(65536))
    assert fields["MESSAGE"] == "turn 7 crashed"
    assert fields["AGENT"] == "bob"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "hive-test"
    assert fields["LOGGER"] == log.name
    assert fields["CODE_FUNC"] == "test_a_record_carries_the_agent_field"
    log.info("hive started")
    assert "AGENT" not in parse_native(server.recv(65536))


def test_multiline_messages_use_the_length_prefixed_form(
    journal: tuple[socket.socket, JournalHandler, logging.Logger],
) -> None:
    server, handler, log = journal
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("turn failed", extra={"agent": "alice"})
    fields = parse_native(server.recv(65536))
    assert fields["MESSAGE"].startswith("turn failed\nTraceback")
    assert "ValueError: boom" in fields["MESSAGE"]
    assert (fields["AGENT"], fields["PRIORITY"]) == ("alice", "3")


def test_a_record_too_big_for_a_datagram_goes_in_a_sealed_memfd(
    journal: tuple[socket.socket, JournalHandler, logging.Logger],
) -> None:
    server, _, log = journal
    big = "x" * (4 << 20)
    log.info(big, extra={"agent": "bob"})
    data, ancdata, _, _ = server.recvmsg(16, socket.CMSG_SPACE(array.array("i").itemsize))
    assert data == b""
    ((level, kind, raw),) = ancdata
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = array.array("i", raw[: array.array("i").itemsize])[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        payload = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    fields = parse_native(payload)
    assert fields["MESSAGE"] == big and fields["AGENT"] == "bob"


def test_a_full_journal_drops_records_instead_of_blocking(
    journal: tuple[socket.socket, JournalHandler, logging.Logger],
) -> None:
    _, handler, log = journal
    # Nobody reads the socket: its queue fills, and logging must still return at once.
    for i in range(5000):
        log.info("record %d", i)
        if handler.dropped:
            break
    assert handler.dropped >= 1


def test_journalctl_reads_one_agent_back() -> None:
    argv = journalctl_argv("bob", 50, uid=0)
    assert argv[0] == "journalctl" and "--output=json" in argv and "--all" in argv
    assert argv[-3:] == ["--lines=50", "AGENT=bob", "_UID=0"]  # only what root sent
    assert "--after-cursor=s=1;i=2" in journalctl_argv("bob", uid=0, after="s=1;i=2")
