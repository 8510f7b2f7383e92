"""Agents' logs: where they go (hive.agentlog, hive.journal) and the one reader every viewer
uses (hive.logtail). The journald side against a real journald is in
test_agent_logs_journald.py; here: the native protocol against a real datagram socket, the
rule that picks journald, and the agent.log fallback end to end (hivectl and the dashboard
show the same lines as agent.log holds)."""

from __future__ import annotations

import array
import fcntl
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from hive import agentlog, logtail
from hive.client import HiveError
from hive.config import HiveConfig
from hive.io.streams import log_stderr
from hive.journal import JournalSender, journald_wanted
from tests.agent_log_support import (
    BOOM,
    CONFIG,
    NOISE,
    boom_lines,
    contains_run,
    noise_texts,
    tag_of,
    text_of,
)
from tests.control_support import hivectl
from tests.ui_harness import DashboardHive, make_dashboard, sse_events, wait_until

__all__ = ["make_dashboard"]  # the fixture, imported for pytest


def parse_native(payload: bytes) -> list[tuple[str, bytes]]:
    """The fields of one native-protocol datagram, in order (a field may repeat)."""
    fields, i = [], 0
    while i < len(payload):
        nl = payload.index(b"\n", i)
        line = payload[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields.append((key.decode(), value))
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", payload[nl + 1 : nl + 9])
            start = nl + 9
            fields.append((line.decode(), payload[start : start + size]))
            assert payload[start + size : start + size + 1] == b"\n"
            i = start + size + 1
    return fields


@pytest.fixture
def journal_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket where journald's would be; agents' logs sent there meanwhile."""
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    assert agentlog.choose(True, path) == "journald"
    try:
        yield server, path
    finally:
        agentlog.choose(False)
        server.close()


async def feed_stderr(log_path: Path, data: bytes, turn: int = 7) -> None:
    send, receive = trio.testing.memory_stream_pair()

    async def write() -> None:
        await send.send_all(data)
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await log_stderr(receive, deque(maxlen=4), log_path, lambda: turn)


# --- the rule and the protocol -----------------------------------------------------------


def test_journald_is_used_only_under_systemd_with_a_live_socket(tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    under_systemd = {"JOURNAL_STREAM": "8:1234"}
    assert not journald_wanted(under_systemd, path)  # no socket
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    assert journald_wanted(under_systemd, path)
    assert not journald_wanted({}, path)  # from a shell: agent.log
    server.close()  # the file stays, nobody listens
    assert path.is_socket() and not journald_wanted(under_systemd, path)


def test_stderr_lines_reach_journald_one_entry_each_and_no_field_can_be_injected(
    journal_socket: tuple[socket.socket, Path], tmp_path: Path
) -> None:
    server, _ = journal_socket
    log_path = tmp_path / "agents" / "bob" / "agent.log"
    log_path.parent.mkdir(parents=True)
    trio.run(feed_stderr, log_path, b"".join(NOISE))
    entries = [parse_native(server.recv(1 << 20)) for _ in noise_texts()]
    for entry, text in zip(entries, noise_texts(), strict=True):
        names = [name for name, _ in entry]
        assert sorted(names) == [
            "AGENT",
            "HIVE_STREAM",
            "MESSAGE",
            "PRIORITY",
            "SYSLOG_IDENTIFIER",
            "TURN",
        ]  # each once
        fields = dict(entry)
        assert fields["MESSAGE"].decode() == text
        assert (fields["AGENT"], fields["TURN"], fields["PRIORITY"]) == (b"bob", b"7", b"6")
        assert fields["SYSLOG_IDENTIFIER"] == b"hive/bob"
    assert not log_path.exists()  # journald took every line


def test_a_multiline_note_is_one_value_in_length_form(
    journal_socket: tuple[socket.socket, Path], tmp_path: Path
) -> None:
    server, _ = journal_socket
    agentlog.note(tmp_path / "bob" / "agent.log", BOOM, turn=5, level=logging.WARNING)
    payload = server.recv(1 << 20)
    assert b"MESSAGE\n" + struct.pack("<Q", len(BOOM)) + BOOM.encode() + b"\n" in payload
    fields = parse_native(payload)
    assert [v for k, v in fields if k == "AGENT"] == [b"bob"]
    assert [v for k, v in fields if k == "TURN"] == [b"5"]
    assert dict(fields)["PRIORITY"] == b"4"


def test_lines_journald_does_not_take_go_to_agent_log_none_lost(
    journal_socket: tuple[socket.socket, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody reads the socket: its queue fills, the reader waits a little for room, then
    keeps the lines in agent.log; every line is in one place or the other."""
    server, _ = journal_socket
    monkeypatch.setattr(agentlog, "JOURNAL_WAIT_SECONDS", 0.2)
    log_path = tmp_path / "bob" / "agent.log"
    log_path.parent.mkdir()
    count = 2000
    trio.run(feed_stderr, log_path, b"".join(b"line %d\n" % i for i in range(count)))
    server.setblocking(False)
    sent = []
    while True:
        try:
            sent.append(dict(parse_native(server.recv(1 << 20)))["MESSAGE"].decode())
        except BlockingIOError:
            break
    kept = [text_of(line) for line in log_path.read_text().splitlines()]
    assert sent and kept
    assert sorted(sent + kept, key=lambda s: int(s.split()[1])) == [
        f"line {i}" for i in range(count)
    ]


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    sender = JournalSender(path)
    big = "x" * (4 << 20)
    assert sender.send({"MESSAGE": big, "AGENT": "bob"})
    int_size = array.array("i").itemsize
    data, ancdata, _, _ = server.recvmsg(16, socket.CMSG_SPACE(int_size))
    ((_, _, raw),) = ancdata
    fd = array.array("i", raw[:int_size])[0]
    try:
        assert data == b"" and fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
        fields = dict(parse_native(os.pread(fd, os.fstat(fd).st_size, 0)))
    finally:
        os.close(fd)
        sender.close()
        server.close()
    assert fields == {"MESSAGE": big.encode(), "AGENT": b"bob"}


def test_a_log_sender_on_a_gone_journald_says_so(tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    sender = JournalSender(path)
    assert sender.send({"MESSAGE": "hello"})
    server.close()
    path.unlink()
    assert not sender.send({"MESSAGE": "into the void"})
    sender.close()


# --- the reader on agent.log ---------------------------------------------------------------


def read(log: Path, lines: int = 100, after: str = "") -> dict[str, Any]:
    return trio.run(logtail.read, "bob", log, lines, after)


def test_the_reader_splits_at_newlines_only_and_bounds_each_line(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    huge = "z" * (logtail.MAX_LINE_BYTES * 2)
    log.write_bytes(
        "a\rb\u2028c\x0bd\x1ce\n".encode() + b"\xff\x00bin\n" + huge.encode() + b"\nunfinished"
    )
    page = read(log)
    assert page["lines"][:2] == ["a\rb\u2028c\x0bd\x1ce", "\ufffd\x00bin"]
    assert page["lines"][2] == "z" * logtail.MAX_LINE_BYTES + " [hive: line cut]"
    assert len(page["lines"]) == 3  # the unfinished line comes when it is finished
    with open(log, "ab") as f:
        f.write(b" now\n")
    assert read(log, after=page["cursor"])["lines"] == ["unfinished now"]


def test_following_agent_log_across_a_rotation_and_in_pages(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text("".join(f"old {i}\n" for i in range(10)))
    page = read(log, lines=3)
    assert page["lines"] == ["old 7", "old 8", "old 9"]
    log.rename(tmp_path / "agent.log.1")  # rotated: the new file is read from its start
    log.write_text("".join(f"new {i}\n" for i in range(5)))
    first = read(log, lines=3, after=page["cursor"])
    assert (first["lines"], first["more"]) == (["new 0", "new 1", "new 2"], True)
    rest = read(log, lines=3, after=first["cursor"])
    assert (rest["lines"], rest["more"]) == (["new 3", "new 4"], False)
    assert read(log, lines=3, after=rest["cursor"])["lines"] == []


def test_a_bad_cursor_is_a_clear_error(tmp_path: Path, journal_socket: Any) -> None:
    log = tmp_path / "agent.log"
    with pytest.raises(logtail.LogError) as info:
        read(log, after="file:1:2")  # agent.log's cursor while journald is the source
    assert info.value.code == "bad_request" and "journald cursor" in str(info.value)
    agentlog.choose(False)
    for bad in ("s=1;i=2", "file:x:1", "file:1:2\n", "../../etc/passwd"):
        with pytest.raises(logtail.LogError) as info:
            read(log, after=bad)
        assert info.value.code == "bad_request"


def test_a_journal_entry_reads_as_the_lines_agent_log_would_hold() -> None:
    entry = {"MESSAGE": list(BOOM.encode()), "TURN": "5", "__REALTIME_TIMESTAMP": "0"}
    shown = logtail.entry_lines(entry)
    assert [text_of(line) for line in shown] == BOOM.split("\n")
    assert {tag_of(line) for line in shown} == {"hive:"}
    stderr = {"MESSAGE": "a\nb", "TURN": "5", "HIVE_STREAM": "stderr", "__REALTIME_TIMESTAMP": "1"}
    shown = logtail.entry_lines(stderr)
    assert [text_of(line) for line in shown] == ["a", "b"]
    assert [tag_of(line) for line in shown] == ["turn=5", "turn=5"]  # never an unmarked line
    assert logtail.entry_lines({"MESSAGE": "x" * (1 << 20)})[0].endswith("[hive: line cut]")


def test_records_that_name_an_agent_are_notes_in_its_agent_log(tmp_path: Path) -> None:
    cfg = HiveConfig(state_dir=tmp_path / "state")
    cfg.agent_dir("bob").mkdir(parents=True)
    agentlog.attach(cfg)
    log = logging.getLogger("hive.test.agentlog")
    try:
        try:
            raise ValueError("why\nAGENT=other")
        except ValueError:
            log.error("turn 3 failed", exc_info=True, extra={"agent": "bob", "turn": 3})
        log.error("about nobody")
        log.error("about a stranger", extra={"agent": "stranger"})
    finally:
        agentlog.detach()
    lines = (cfg.agent_dir("bob") / "agent.log").read_text().splitlines()
    assert all(tag_of(line) == "hive:" for line in lines)
    assert text_of(lines[0]) == "turn 3 failed" and text_of(lines[-1]) == "AGENT=other"
    assert not cfg.agent_dir("stranger").exists()  # no directory made for a note


# --- end to end: no journald, agent.log; hivectl and the dashboard show the same lines ------


def log_page(dash: DashboardHive, lines: int = 500) -> tuple[dict[str, Any], dict[str, Any]]:
    cli = hivectl(dash.hive, "logs", "bob", "-n", str(lines))
    assert cli.returncode == 0, cli.stderr
    return cli.json(), dash.ok("GET", f"/api/agents/bob/log?lines={lines}")


def test_without_journald_every_viewer_shows_agent_log(make_dashboard: Any) -> None:
    dash = make_dashboard(CONFIG)
    hive = dash.hive
    hive.admin("send", to="bob", body="noise")
    expected = noise_texts()

    def noise_shown() -> list[str] | None:
        lines = log_page(dash)[0]["lines"]
        texts = [text_of(line) for line in lines]
        return lines if contains_run(texts, expected) and "ended: ok" in texts[-1] else None

    wait_until(noise_shown, timeout=60, what="bob's stderr in its log")
    cli, api = log_page(dash)
    assert cli == api  # the same verb: the same lines, source, path and cursor
    assert cli["source"] == "file" and not cli["more"]
    agent_log = hive.state_dir / "agents" / "bob" / "agent.log"
    assert agent_log.read_bytes().decode().split("\n")[:-1] == cli["lines"]  # the file, as is
    turn_tags = {tag_of(line) for line in cli["lines"] if text_of(line) in expected}
    assert len(turn_tags) == 1 and turn_tags != {"hive:"}
    follow_same_lines(dash, api["cursor"])


def follow_same_lines(dash: DashboardHive, cursor: str) -> None:
    """hivectl logs --follow and the dashboard's stream, from the same cursor, while bob
    crashes once: both show the same new lines, the crash's injected fields as text."""
    argv = [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(dash.hive.admin_path),
            "--json", "logs", "bob", "-n", "1", "--follow"]  # fmt: skip
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    streamed: list[str] = []

    def crash_shown(lines: list[str]) -> bool:
        texts = [text_of(line) for line in lines]
        return crash_at(texts) >= 0 and "ended: ok" in texts[-1]

    def stream() -> None:
        events = sse_events(
            dash, f"/api/agents/bob/log/stream?after={cursor}",
            lambda evs: crash_shown([line for ev in evs for line in ev["lines"]]), timeout=60,
        )  # fmt: skip
        streamed.extend(line for ev in events for line in ev["lines"])

    reader = threading.Thread(target=stream)
    reader.start()
    try:
        assert follower.stdout is not None
        while follower.stdout.readline() != "}\n":  # the first page (indented JSON)
            pass
        dash.hive.admin("send", to="bob", body=BOOM)
        followed: list[str] = []
        while not crash_shown(followed):
            followed.append(json.loads(follower.stdout.readline()))
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        reader.join(timeout=90)
    assert streamed == followed
    texts = [text_of(line) for line in followed]
    at = crash_at(texts)
    assert texts[at : at + 4] == boom_lines(int(texts[at].split()[1]))
    assert all(tag_of(line) == "hive:" for line in followed if "AGENT=other" in line)
    page = log_page(dash)[0]["lines"]
    assert page[-len(followed) :] == followed


def crash_at(texts: list[str]) -> int:
    """Where the note of bob's crash starts in ``texts`` (-1: not there)."""
    for i, text in enumerate(texts):
        if re.fullmatch(r"turn \d+ of bob ended: crash boom", text):
            return i if texts[i + 1 : i + 4] == BOOM.split("\n")[1:] else -1
    return -1


def test_the_log_endpoints_refuse_bad_input(make_dashboard: Any) -> None:
    dash = make_dashboard(CONFIG)
    for path in ("/api/agents/bob/log?after=s%3D1", "/api/agents/bob/log/stream?after=nope",
                 "/api/agents/bob/log?after=" + "x" * 600, "/api/agents/nobody/log"):  # fmt: skip
        r = dash.api("GET", path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert r.json()["error"]["code"] in ("bad_request", "unknown_agent")
    with pytest.raises(HiveError) as info:
        dash.hive.admin("logs", name="bob", after="s=1;i=2")
    assert info.value.code == "bad_request"


FAILING = """
[hive]
restart_intensity = 1
backoff_initial = 0.05

[[agent]]
name = "carl"
[[agent.script]]
match = "*"
do = [{op = "crash", code = 3, message = "out of {body}"}]
"""


def test_the_crash_and_the_failure_reason_are_in_the_agents_log(make_dashboard: Any) -> None:
    dash = make_dashboard(FAILING)
    dash.hive.admin("send", to="carl", body="coffee")

    def failed() -> list[str] | None:
        lines = dash.ok("GET", "/api/agents/carl/log")["lines"]
        return lines if any("carl failed:" in line for line in lines) else None

    lines = [text_of(line) for line in wait_until(failed, timeout=60, what="carl's failure")]
    assert "scripted crash of carl: out of coffee" in lines  # its stderr
    ended = [t for t in lines if re.fullmatch(r"turn \d+ of carl ended: crash .*", t)]
    assert ended and ended[0].endswith("exit code 3: scripted crash of carl: out of coffee")
    assert lines[-1].startswith("carl failed: 2 crashes in")
    assert (
        hivectl(dash.hive, "logs", "carl").json()["lines"]
        == dash.ok("GET", "/api/agents/carl/log?lines=100")["lines"]
    )
