"""What turn processes share, per turn or persistent: their output streams and signals.

Runs on the trio thread (hive.io.turns, hive.io.sessions, hive.notes).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from hive.agentlog import MAX_AGENT_LOG_BYTES, StderrLog, note
from hive.runtimes.base import TurnEvent

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
STDERR_TAIL_LINE_CHARS = 4000  # of each kept line: the tail is for classify and the detail
# A line of a turn's stdout or stderr longer than this is cut here: the rest is counted and
# discarded as it arrives, never held (a 100 MB line with no newline once took 100 s of the
# trio thread and its size in memory).
MAX_LINE_BYTES = 4 << 20
# A line of stderr is cut here for the agent's log (journald's own cut for a service's
# output is 48 KiB); the viewers read back bounded lines.
STDERR_LINE_BYTES = 32 << 10
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
    """Send a process's stderr to the agent's log (journald or agent.log: hive.agentlog),
    each line with the turn it belongs to; keep its tail for ``classify``.

    A log that cannot be written (the agent put a link in agent.log's place) is skipped,
    not fatal: stderr is still drained and its tail kept, so the turn runs as usual."""
    out = StderrLog(log_path, max_bytes)
    try:
        async for raw in lines(stream, STDERR_LINE_BYTES):
            line = raw.decode("utf-8", "replace")
            if isinstance(raw, TruncatedLine):
                line = f"{line} {raw.marker()}"
            tail.append(line[:STDERR_TAIL_LINE_CHARS])
            await out.write(turn_id(), line)
    finally:
        out.close()


def agent_log(log_path: Path, line: str, max_bytes: int = MAX_AGENT_LOG_BYTES) -> None:
    """One note from the supervisor itself in the agent's log (hive.agentlog.note)."""
    note(log_path, line, max_bytes=max_bytes)
