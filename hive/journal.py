"""Write to journald's native socket: the supervisor's log records, and agents' log lines.

A record that carries an ``agent`` attribute (``extra={"agent": "bob", "turn": 7}``, or a
``logging.LoggerAdapter(log, {"agent": "bob"})``) is stored with ``AGENT=bob`` (and
``TURN=7``), so the operator and the log viewers can ask for one agent:
``journalctl AGENT=bob``. hive.agentlog sends agents' own output through ``JournalSender``.

>>> import logging
>>> handler = JournalHandler("/nonexistent/journal/socket")
>>> handler.fields(logging.makeLogRecord({"msg": "hi", "levelno": 20, "agent": "bob"}))["AGENT"]
'bob'

The protocol (systemd's "Native Journal Protocol"): one datagram of ``KEY=value\\n`` lines;
a value holding a newline is sent as ``KEY\\n`` + its length (64-bit little endian) + the
bytes + ``\\n``; a record too large for a datagram goes in a sealed memfd passed as the
datagram's only content. Values are agents' output here, so every value with a newline (or a
NUL) takes the length form: a line like ``"x\\nAGENT=other"`` stays one value of one field.

When to use journald at all (``journald_wanted``): only when systemd started the supervisor
with its stderr in the journal (``JOURNAL_STREAM`` set) *and* the native socket takes a
connection. Run from a shell on a systemd host, the lines would land in a journal the
operator's ``journalctl`` may not show (a user's journal, or none without group
``systemd-journal``), and a stale socket file with no journald behind it would swallow them:
both keep agent.log instead.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Mapping
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


def encode_field(name: str, value: str | bytes) -> bytes:
    """One field in the native protocol; any value with a newline or NUL in length form.

    >>> encode_field("MESSAGE", "a\\nb")
    b'MESSAGE\\n\\x03\\x00\\x00\\x00\\x00\\x00\\x00\\x00a\\nb\\n'
    """
    data = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
    if b"\n" in data or b"\0" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def encode_entry(fields: dict[str, str]) -> bytes:
    return b"".join(encode_field(k, v) for k, v in fields.items())


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
        for attribute, field in (("agent", "AGENT"), ("turn", "TURN")):
            value = getattr(record, attribute, None)
            if value is not None and value != "":
                fields[field] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(encode_entry(self.fields(record)))
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
        fd = _sealed_memfd(payload)
        try:
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


def journal_connectable(path: str | Path = JOURNAL_SOCKET) -> bool:
    """Whether a journald listens on ``path`` (a socket file alone may be stale)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def journald_wanted(
    environ: Mapping[str, str] | None = None, path: str | Path = JOURNAL_SOCKET
) -> bool:
    """The rule of the module docstring: ``JOURNAL_STREAM`` is set and journald answers."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("JOURNAL_STREAM")) and journal_connectable(path)


class JournalSender:
    """Sends one entry at a time to journald, never blocking: ``send`` says whether the
    entry went (False: journald's queue is full or journald is gone; the caller keeps the
    line elsewhere). The socket is connected, so ``wait_writable`` can wait for room."""

    def __init__(self, path: str | Path = JOURNAL_SOCKET) -> None:
        self.path = str(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._socket.connect(self.path)

    def fileno(self) -> int:
        return self._socket.fileno()

    def send(self, fields: dict[str, str]) -> bool:
        return self.send_encoded(encode_entry(fields))

    def send_encoded(self, payload: bytes) -> bool:
        """``send`` of an entry already encoded (``encode_entry``, ``encode_field``)."""
        try:
            self._socket.send(payload)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                return self._reconnect_and_send(payload)
            return self._send_memfd(payload)
        return True

    def _reconnect_and_send(self, payload: bytes) -> bool:
        """journald restarted (a new socket at the same path): connect again, once."""
        try:
            self._socket.connect(self.path)
            self._socket.send(payload)
        except OSError:
            return False
        return True

    def _send_memfd(self, payload: bytes) -> bool:
        fd = _sealed_memfd(payload)
        try:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._socket.sendmsg([], rights)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        self._socket.close()


def _sealed_memfd(payload: bytes) -> int:
    fd = os.memfd_create("hive-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]
    # journald only accepts a memfd nobody can change any more.
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    return fd


def journalctl_argv(agent: str, lines: int = 200, *, uid: int, after: str = "") -> list[str]:
    """The command that reads one agent's log back: JSON lines, the newest ``lines``
    entries, or (``after``: a cursor) the next ``lines`` entries after that cursor. Only
    entries sent by ``uid`` (the supervisor's): ``_UID`` is set by journald, not the sender.
    ``--all``: without it journalctl prints a field over 4096 bytes as null."""
    argv = ["journalctl", "--no-pager", "--quiet", "--all", "--output=json",
            f"--output-fields={','.join(READ_FIELDS)}", f"--lines={lines}"]  # fmt: skip
    if after:
        argv.append(f"--after-cursor={after}")
    return [*argv, f"AGENT={agent}", f"_UID={uid}"]


# What a log viewer needs of an entry (journalctl adds __CURSOR and the timestamps).
READ_FIELDS = ("MESSAGE", "TURN", "HIVE_STREAM")
