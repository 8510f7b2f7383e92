"""Log records to journald's native socket, with the agent's name as a field of its own.

A record that carries an ``agent`` attribute (``extra={"agent": "bob"}``, or a
``logging.LoggerAdapter(log, {"agent": "bob"})``) is stored with ``AGENT=bob``, so the
operator and the dashboard's log viewer can ask for one agent: ``journalctl AGENT=bob``.

>>> import logging
>>> handler = JournalHandler("/nonexistent/journal/socket")
>>> handler.fields(logging.makeLogRecord({"msg": "hi", "levelno": 20, "agent": "bob"}))["AGENT"]
'bob'

The protocol (systemd's "Native Journal Protocol"): one datagram of ``KEY=value\\n`` lines;
a value holding a newline is sent as ``KEY\\n`` + its length (64-bit little endian) + the
bytes + ``\\n``; a record too large for a datagram goes in a sealed memfd passed as the
datagram's only content.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import struct
from pathlib import Path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def syslog_priority(levelno: int) -> int:
    for level, priority in sorted(_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return priority
    return 7


def encode_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """A logging handler that writes each record to journald (see the module docstring).

    It never blocks the thread that logs: when journald's queue is full the record is
    dropped and counted in ``dropped`` rather than stalling an actor or the IO loop.
    """

    def __init__(
        self,
        path: str | Path = JOURNAL_SOCKET,
        *,
        identifier: str = "hive",
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.path = str(path)
        self.identifier = identifier
        self.dropped = 0
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        fields = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(syslog_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            "THREAD_NAME": str(record.threadName),
        }
        for attribute, field in (("agent", "AGENT"), ("turn_id", "TURN_ID")):
            value = getattr(record, attribute, None)
            if value is not None and value != "":
                fields[field] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = b"".join(encode_field(k, v) for k, v in self.fields(record).items())
            self._send(payload)
        except Exception:
            self.handleError(record)

    def _send(self, payload: bytes) -> None:
        try:
            self._socket.sendto(payload, self.path)
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(payload)

    def _send_memfd(self, payload: bytes) -> None:
        fd = os.memfd_create("hive-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            # journald only accepts a memfd nobody can change any more.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            try:
                self._socket.sendmsg([], rights, 0, self.path)
            except BlockingIOError:
                self.dropped += 1
        finally:
            os.close(fd)

    def close(self) -> None:
        self._socket.close()
        super().close()


def journal_available(path: str | Path = JOURNAL_SOCKET) -> bool:
    return Path(path).is_socket()


def journalctl_argv(agent: str, lines: int = 200, *, follow: bool = False) -> list[str]:
    """The command that reads one agent's log back (JSON lines, newest ``lines``)."""
    argv = ["journalctl", "--no-pager", "--output=json", f"--lines={lines}", f"AGENT={agent}"]
    return [*argv, "--follow"] if follow else argv
