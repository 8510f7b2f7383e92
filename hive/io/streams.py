"""What turn processes share, per turn or persistent: their output streams and signals.

Runs on the trio thread (hive.io.turns, hive.io.sessions, hive.notes).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

import trio

from hive import safefs
from hive.runtimes.base import TurnEvent
from hive.safefs import open_append

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
STDERR_TAIL_LINE_CHARS = 4000  # of each kept line: the tail is for classify and the detail
# A line of a turn's stdout or stderr longer than this is cut here: the rest is counted and
# discarded as it arrives, never held (a 100 MB line with no newline once took 100 s of the
# trio thread and its size in memory).
MAX_LINE_BYTES = 4 << 20
# agent.log is rotated past this (one older file kept: agent.log.1), so an agent's stderr
# takes at most about twice this much disk.
MAX_AGENT_LOG_BYTES = 64 << 20
FIRST_EVENTS_KEPT = 20
LAST_EVENTS_KEPT = 500


class EventLog:
    """The events of one turn that ``classify`` reads: the first few (init: which MCP servers
    started) and the latest (the result). A long turn's middle is only in the transcript.

    >>> log = EventLog()
    >>> for i in range(30): log.add(TurnEvent("text", {"i": i}))
    >>> [e.data["i"] for e in log.kept()][:3], len(log.kept())
    ([0, 1, 2], 30)
    """

    def __init__(self) -> None:
        self.first: list[TurnEvent] = []
        self.last: deque[TurnEvent] = deque(maxlen=LAST_EVENTS_KEPT)

    def add(self, event: TurnEvent) -> None:
        if len(self.first) < FIRST_EVENTS_KEPT:
            self.first.append(event)
        else:
            self.last.append(event)

    def kept(self) -> list[TurnEvent]:
        return self.first + list(self.last)  # disjoint: the first few, then the latest


def signal_group(process: trio.Process, sig: int) -> None:
    """Signal the process group a turn process leads (it was started in a new session)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class TruncatedLine(bytes):
    """The first ``MAX_LINE_BYTES`` of a longer line; ``dropped`` bytes of it were cut."""

    dropped: int = 0

    def marker(self) -> str:
        return f"[hive: line cut at {len(self)} bytes, {self.dropped} more bytes dropped]"


def _line(head: bytes | bytearray, dropped: int) -> bytes:
    if not dropped:
        return bytes(head)
    line = TruncatedLine(head)
    line.dropped = dropped
    return line


async def lines(
    stream: trio.abc.ReceiveStream, max_line: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes]:
    """The lines of a byte stream, without their newlines; a last unterminated one too.

    A line over ``max_line`` bytes comes out as a ``TruncatedLine``; memory stays within
    ``max_line`` plus one read, and each byte is scanned once."""
    head = bytearray()  # the current line so far (at most max_line bytes)
    dropped = 0  # bytes of the current line past max_line
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if head or dropped:
                yield _line(head, dropped)
            return
        start = 0
        while start <= len(chunk):
            nl = chunk.find(b"\n", start)
            end = len(chunk) if nl < 0 else nl
            room = max(0, max_line - len(head))
            head += chunk[start : min(end, start + room)]
            dropped += max(0, end - start - room)
            if nl < 0:
                break
            yield _line(head, dropped)
            head, dropped = bytearray(), 0
            start = nl + 1


def parse_events(parse: Callable[[bytes], list[TurnEvent]], line: bytes) -> list[TurnEvent]:
    """``parse(line)``, where a runtime that chokes on a line costs that line only.

    A cut line is not parsed (it is not whole): it becomes one ``output_truncated`` event."""
    if isinstance(line, TruncatedLine):
        log.warning("a turn wrote a line of %d bytes; %s", len(line) + line.dropped, line.marker())
        return [TurnEvent("output_truncated", {"kept": len(line), "dropped": line.dropped})]
    try:
        return parse(line)
    except Exception:
        log.exception("could not parse a turn output line")
        return []


async def log_stderr(
    stream: trio.abc.ReceiveStream,
    tail: deque[str],
    log_path: Path,
    turn_id: Callable[[], int],
    max_bytes: int = MAX_AGENT_LOG_BYTES,
) -> None:
    """Append a process's stderr to the agent's own log (what the dashboard's log viewer shows
    where journald is absent), each line stamped with the turn it belongs to.

    A log that cannot be opened (the agent put a link there) is skipped, not fatal: stderr
    is still drained and its tail kept, so the turn runs and is classified as usual."""
    f = _open_log(log_path, max_bytes)
    try:
        async for raw in lines(stream):
            line = raw.decode("utf-8", "replace")
            if isinstance(raw, TruncatedLine):
                line = f"{line} {raw.marker()}"
            tail.append(line[:STDERR_TAIL_LINE_CHARS])
            if f is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                f.write(f"{stamp} turn={turn_id()} {line}\n")
                f.flush()
                if f.tell() > max_bytes:
                    f.close()
                    f = _open_log(log_path, max_bytes)
    finally:
        if f is not None:
            f.close()


def agent_log(log_path: Path, line: str, max_bytes: int = MAX_AGENT_LOG_BYTES) -> None:
    """One line from the supervisor itself in the agent's log."""
    f = _open_log(log_path, max_bytes)
    if f is not None:
        with f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} hive: {line}\n")


def _open_log(log_path: Path, max_bytes: int) -> TextIO | None:
    """The agent's log for appending; past ``max_bytes`` it becomes ``agent.log.1`` (the one
    before goes) and a new one starts. The root supervisor writes it, so the agent's own
    file-size limits do not hold: without this an agent could fill the disk through its
    stderr."""
    root, name = log_path.parent, log_path.name
    try:
        if safefs.size_of(root, name) > max_bytes:
            safefs.rename_within(root, name, f"{name}.1")
        return open_append(root, name)
    except OSError as exc:
        log.warning("not writing %s: %s", log_path, exc, extra={"agent": log_path.parent.name})
        return None
