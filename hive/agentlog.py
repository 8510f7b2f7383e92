"""Where an agent's log goes: journald, or its agent.log; and how its lines read.

An agent's log holds every line its processes write to stderr (turn processes and
persistent sessions alike), each with the turn it belongs to, and hive's notes on it: how
each turn ended and why (the crash reason), what the IO side did about its output (events
dropped, a session closed), compaction. A note is a supervisor log record that names the
agent (``extra={"agent": name, "turn": id}``) or a call of ``note``.

The sink is chosen once, at start (``choose``, by the rule of hive.journal.journald_wanted):

- journald: one entry per stderr line (``MESSAGE``, ``AGENT``, ``TURN``, ``PRIORITY=6``,
  ``SYSLOG_IDENTIFIER=hive/<name>``, ``HIVE_STREAM=stderr``) and per note (``AGENT``,
  ``TURN``, ``SYSLOG_IDENTIFIER=hive``, the record's priority). A line journald does not take
  (its queue stays full, or it is gone) is written to agent.log instead, never dropped.
- otherwise: ``<state>/agents/<name>/agent.log``, rotated past 64 MiB to ``agent.log.1``.

Either way the viewers (hive.logtail, for ``hivectl logs`` and the dashboard) show the same
lines, one per line of text: ``<local time> turn=<id> <stderr line>`` or
``<local time> hive: <note line>``.

>>> stderr_line("2026-12-01T17:00:00", 12, "warming up")
'2026-12-01T17:00:00 turn=12 warming up'
>>> note_lines("2026-12-01T17:00:00", "turn 12 ended: crash\\nTraceback")
['2026-12-01T17:00:00 hive: turn 12 ended: crash', '2026-12-01T17:00:00 hive: Traceback']
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio

from hive import safefs
from hive.journal import (
    JOURNAL_SOCKET,
    JournalSender,
    encode_entry,
    encode_field,
    syslog_priority,
)

if TYPE_CHECKING:
    from hive.config import HiveConfig

log = logging.getLogger(__name__)

# agent.log is rotated past this (one older file kept: agent.log.1), so an agent's stderr
# takes at most about twice this much disk.
MAX_AGENT_LOG_BYTES = 64 << 20
# A note longer than this many lines keeps its first ones (a crash detail holds at most the
# 40 lines of stderr tail; a traceback some 50).
MAX_NOTE_LINES = 100
MAX_NOTE_BYTES = 32 << 10
# How long a stderr reader waits for room in journald's queue before it writes the line to
# agent.log instead (the agent's writes to stderr block meanwhile: back-pressure, not loss).
JOURNAL_WAIT_SECONDS = 5.0
_FILE = "file"
_JOURNALD = "journald"


class _Sink:
    journal: JournalSender | None = None
    handler: logging.Handler | None = None


_sink = _Sink()
_rotate_lock = threading.Lock()  # the trio thread and actor threads append to one file


def choose(journald: bool, path: str | Path = JOURNAL_SOCKET) -> str:
    """Send agents' logs to journald at ``path`` (True) or to their agent.log files; the
    source name the readers report. A journald that cannot be reached means files."""
    if _sink.journal is not None:
        _sink.journal.close()
        _sink.journal = None
    if journald:
        try:
            _sink.journal = JournalSender(path)
        except OSError as exc:
            log.warning("agents' logs go to agent.log: journald at %s: %s", path, exc)
    return source()


def source() -> str:
    return _JOURNALD if _sink.journal is not None else _FILE


def journal() -> JournalSender | None:
    return _sink.journal


# --- the lines as the viewers show them ---------------------------------------------------


def stamp(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))


def stderr_line(when: str, turn: object, text: str) -> str:
    return f"{when} turn={turn} {text}"


def note_lines(when: str, text: str) -> list[str]:
    pieces = text.split("\n")
    if len(pieces) > MAX_NOTE_LINES:
        more = len(pieces) - MAX_NOTE_LINES
        pieces = [*pieces[:MAX_NOTE_LINES], f"[hive: {more} more lines not kept]"]
    return [f"{when} hive: {piece}" for piece in pieces]


def _cut_note(text: str) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_NOTE_BYTES:
        return text
    kept = data[:MAX_NOTE_BYTES].decode("utf-8", "ignore")
    return f"{kept} [hive: note cut at {MAX_NOTE_BYTES} bytes]"


# --- writers ------------------------------------------------------------------------------


class StderrLog:
    """One process's stderr on its way to the agent's log (used on the trio thread)."""

    def __init__(self, log_path: Path, max_bytes: int = MAX_AGENT_LOG_BYTES) -> None:
        self.path = log_path
        self.agent = log_path.parent.name
        self.max_bytes = max_bytes
        self.journal = journal()
        # The fields every line of this stream shares, encoded once, not per line.
        self._fixed = encode_entry({"PRIORITY": "6", "SYSLOG_IDENTIFIER": f"hive/{self.agent}",
                                    "AGENT": self.agent, "HIVE_STREAM": "stderr"})  # fmt: skip
        self.journal_stuck = False  # it refused a line: no more waiting until it takes one
        self._file: TextIO | None = None
        self._file_tried = False
        self.unwritten = 0  # lines lost to a failing write (a full disk) since the last one

    async def write(self, turn: object, text: str) -> None:
        if self.journal is not None and await self._to_journal(turn, text):
            return
        self._to_file(stderr_line(stamp(), turn, text))

    async def _to_journal(self, turn: object, text: str) -> bool:
        assert self.journal is not None
        entry = encode_field("MESSAGE", text) + encode_field("TURN", str(turn)) + self._fixed
        if self.journal.send_encoded(entry):
            self.journal_stuck = False
            return True
        if not self.journal_stuck:
            with trio.move_on_after(JOURNAL_WAIT_SECONDS):
                while True:
                    await trio.lowlevel.wait_writable(self.journal.fileno())
                    if self.journal.send_encoded(entry):
                        return True
            self.journal_stuck = True
            log.warning("journald is not taking %s's stderr: keeping it in %s",
                        self.agent, self.path)  # fmt: skip
        return False

    def _to_file(self, line: str) -> None:
        if self._file is None and not self._file_tried:
            self._file = _open_log(self.path, self.max_bytes)
            self._file_tried = True  # a log that cannot be opened is skipped, not retried
        if self._file is None:
            return
        try:
            size = _append(self._file, self._with_gap_marker(line))
        except OSError as exc:
            # A full disk (ENOSPC, EDQUOT) or a failing one: the line is dropped, not the
            # turn. Raising here used to end the process's output readers, which made the
            # turn a crash, so a full disk crash-looped every agent that wrote to stderr.
            if not self.unwritten:
                log.warning("not writing %s: %s; dropping its lines until it can be written",
                            self.path, exc)  # fmt: skip
            self.unwritten += 1
            return
        self.unwritten = 0
        if size > self.max_bytes:
            self._file.close()
            self._file = _open_log(self.path, self.max_bytes)

    def _with_gap_marker(self, line: str) -> list[str]:
        """``line``, after a marker for the lines a failing write dropped before it."""
        if not self.unwritten:
            return [line]
        gap = f"{stamp()} hive: {self.unwritten} lines of stderr could not be written here"
        return [gap, line]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def note(
    log_path: Path,
    text: str,
    *,
    turn: object = None,
    level: int = logging.INFO,
    max_bytes: int = MAX_AGENT_LOG_BYTES,
) -> None:
    """One note from hive itself in the agent's log (from any thread)."""
    agent, text = log_path.parent.name, _cut_note(text)
    sender = journal()
    if sender is not None:
        fields = {"MESSAGE": text, "PRIORITY": str(syslog_priority(level)),
                  "SYSLOG_IDENTIFIER": "hive", "AGENT": agent}  # fmt: skip
        if turn is not None:
            fields["TURN"] = str(turn)
        if sender.send(fields):
            return
    f = _open_log(log_path, max_bytes)
    if f is not None:
        with f:
            try:
                _append(f, note_lines(stamp(), text))
            except OSError as exc:  # a full disk costs the note, not the caller
                log.warning("not writing %s: %s", log_path, exc)


def _append(f: TextIO, lines: list[str]) -> int:
    """Append whole lines in one write (the trio thread and actor threads append to the
    same file: their lines interleave whole); the file's size after it."""
    data = "".join(f"{line}\n" for line in lines).encode("utf-8", "replace")
    fd = f.fileno()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return os.lseek(fd, 0, os.SEEK_CUR)


def _open_log(log_path: Path, max_bytes: int) -> TextIO | None:
    """The agent's log for appending; past ``max_bytes`` it becomes ``agent.log.1`` (the one
    before goes) and a new one starts. The root supervisor writes it, so the agent's own
    file-size limits do not hold: without this an agent could fill the disk through its
    stderr."""
    root, name = log_path.parent, log_path.name
    try:
        with _rotate_lock:
            if safefs.size_of(root, name) > max_bytes:
                safefs.rename_within(root, name, f"{name}.1")
            return safefs.open_append(root, name)
    except OSError as exc:
        # Not a note: this would come straight back here.
        log.warning("not writing %s: %s", log_path, exc)
        return None


class AgentLogHandler(logging.Handler):
    """Puts each supervisor log record that names an agent (``extra={"agent": ...}``) in
    that agent's agent.log as a note: where journald takes them, JournalHandler does (with
    AGENT and TURN fields), so this handler is only installed for agent.log."""

    def __init__(self, cfg: HiveConfig) -> None:
        super().__init__(logging.INFO)
        self.cfg = cfg

    def emit(self, record: logging.LogRecord) -> None:
        agent = getattr(record, "agent", None)
        if not isinstance(agent, str) or not agent:
            return
        try:
            path = self.cfg.agent_dir(agent) / "agent.log"
            if path.parent.is_dir():  # never create an agent's directory for a note
                note(path, self.format(record), turn=getattr(record, "turn", None))
        except Exception:
            self.handleError(record)


def attach(cfg: HiveConfig) -> None:
    """For as long as the daemon runs (until ``detach``): notes go to agent.log where
    journald does not take them (the choice made by ``choose``; files if nobody chose)."""
    detach()
    if source() == _FILE:
        _sink.handler = AgentLogHandler(cfg)
        logging.getLogger().addHandler(_sink.handler)


def detach() -> None:
    if _sink.handler is not None:
        logging.getLogger().removeHandler(_sink.handler)
        _sink.handler = None
