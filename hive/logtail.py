"""The one reader of an agent's log, for ``hivectl logs`` and the dashboard's log viewer.

It reads wherever hive.agentlog writes (journald or agent.log, chosen at start) and gives
both viewers the same lines: ``read(agent, path, lines)`` is a page of the newest lines and
a cursor; ``read(..., after=cursor)`` the lines that came after it (following is reading
after the last cursor again). Every page is bounded: at most ``lines`` lines (the caller
caps it), each cut at ``MAX_LINE_BYTES``, at most ``MAX_PAGE_BYTES`` in all.

What an agent wrote is hostile input here:

- journald: only entries sent by the supervisor's own uid are read (``_UID``, a field
  journald sets itself): an agent that reaches the journal socket and sends ``AGENT=bob``
  does not write bob's log. Fields are JSON (a binary or control-laden value arrives as a
  list of bytes); an entry whose JSON is over ``MAX_ENTRY_BYTES`` is skipped with a marker.
- agent.log sits in the agent's own directory, so the agent can replace it with a link to
  a file it must not read through the operator's eyes (the operator token, hive.db) or
  with a FIFO that would hang the reader. Every read goes through
  ``hive.safefs.open_regular``: no link is followed, and only a regular file is read.
  Lines end at ``\\n`` only (a ``\\r`` or ``\\u2028`` inside a line does not split it, as it
  does not in journald), and a follower that falls more than ``MAX_BEHIND_BYTES`` behind
  (a flood, a sparse jump) skips ahead with a marker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import deque
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from hive import agentlog, safefs
from hive.io import streams
from hive.journal import journalctl_argv

MAX_LINE_BYTES = 64 << 10
MAX_PAGE_BYTES = 4 << 20
# The most read from the end of a log for its last lines: the agent writes the file, and a
# sparse 2 GiB file without a newline must not be read whole looking for one.
MAX_TAIL_BYTES = MAX_PAGE_BYTES
MAX_BEHIND_BYTES = 1 << 20
MAX_ENTRY_BYTES = 1 << 20  # of one journal entry's JSON (a 32 KiB line as bytes: ~130 KiB)
JOURNALCTL_SECONDS = 30.0
_JOURNAL_CURSOR = re.compile(r"[a-z]=[0-9a-f]{1,64}(;[a-z]=[0-9a-f]{1,64}){0,15}")
_FILE_CURSOR = re.compile(r"file:([0-9]{1,20}):([0-9]{1,20})")


class LogError(Exception):
    """A read that cannot be done; ``code`` is its wire error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def read(agent: str, path: Path, lines: int, after: str = "") -> dict[str, Any]:
    """A page of the agent's log: ``{"source", "lines", "cursor", "more"}`` (and ``path``
    for agent.log). ``more``: the page is full, more lines follow ``cursor`` already."""
    check_cursor(after)
    if agentlog.source() == "journald":
        page = await _read_journal(agent, lines, after)
        return {"source": "journald", **page}
    match = _FILE_CURSOR.fullmatch(after)
    position = (int(match[1]), int(match[2])) if match else None
    page = await trio.to_thread.run_sync(_read_file, path, lines, position)
    return {"source": "file", "path": str(path), **page}


def check_cursor(after: str) -> None:
    """LogError (bad_request) unless ``after`` is "" or a cursor of the log's source."""
    if agentlog.source() == "journald":
        if after and not _JOURNAL_CURSOR.fullmatch(after):
            raise LogError("bad_request", f"not a journald cursor: {after[:80]!r}")
    elif after and not _FILE_CURSOR.fullmatch(after):
        raise LogError("bad_request", f"not an agent.log cursor: {after[:80]!r}")


def bounded(data: bytes) -> str:
    """One line as the viewers show it: its first MAX_LINE_BYTES, decoded."""
    if len(data) > MAX_LINE_BYTES:
        return data[:MAX_LINE_BYTES].decode("utf-8", "replace") + " [hive: line cut]"
    return data.decode("utf-8", "replace")


class _Page:
    """Lines within the page's bounds: ``newest`` keeps the last ones (a tail), else the
    page ends at the first line that does not fit (a read after a cursor)."""

    def __init__(self, limit: int, newest: bool) -> None:
        self.limit, self.newest = limit, newest
        self.lines: deque[str] = deque()
        self.size = 0
        self.full = False

    def add(self, line: str) -> bool:
        """Add ``line``; False if the page was full (a read after a cursor stops there)."""
        cost = len(line) + 1
        if not self.newest and (len(self.lines) >= self.limit or self.size + cost > MAX_PAGE_BYTES):
            self.full = True
            return False
        self.lines.append(line)
        self.size += cost
        while self.newest and (len(self.lines) > self.limit or self.size > MAX_PAGE_BYTES):
            self.size -= len(self.lines.popleft()) + 1
        return True

    def add_all(self, lines: Iterable[str]) -> bool:
        return all(self.add(line) for line in lines)


# --- agent.log ----------------------------------------------------------------------------


def _read_file(path: Path, lines: int, position: tuple[int, int] | None) -> dict[str, Any]:
    try:
        f = safefs.open_regular(path.parent, path.name)
    except OSError:  # missing, a link, a FIFO...: an empty log
        return {"lines": [], "cursor": "file:0:0", "more": False}
    with f:
        inode = os.fstat(f.fileno()).st_ino
        if position is None:
            text, offset = _tail(f, lines)
            return {"lines": text, "cursor": f"file:{inode}:{offset}", "more": False}
        page = _Page(lines, newest=False)
        offset = _read_after(f, inode, position, page)
        return {"lines": list(page.lines), "cursor": f"file:{inode}:{offset}", "more": page.full}


def _tail(f: Any, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` whole lines within the last MAX_TAIL_BYTES, and the offset where
    following starts (the end of the last whole line; an unfinished line comes later)."""
    size = f.seek(0, os.SEEK_END)
    block, data, pos = 8192, b"", size
    while pos > 0 and data.count(b"\n") <= lines and len(data) < MAX_TAIL_BYTES:
        step = min(block, pos, MAX_TAIL_BYTES - len(data))
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        block *= 2
    end = data.rfind(b"\n")
    if end < 0:  # no whole line in the window: skip the unfinished one
        return [], size
    whole = data[:end].split(b"\n")
    if pos > 0:
        whole = whole[1:]  # the first piece may be the end of a longer line
    page = _Page(lines, newest=True)
    page.add_all(bounded(line) for line in whole[-lines:] if lines > 0)
    return list(page.lines), pos + end + 1


def _read_after(f: Any, inode: int, position: tuple[int, int], page: _Page) -> int:
    """Whole lines after ``position`` (inode, offset) into ``page``; the offset reached."""
    size = os.fstat(f.fileno()).st_size
    offset = position[1]
    if position[0] != inode or offset > size:  # rotated or cut: the new file from its start
        offset = 0
    if size - offset > MAX_BEHIND_BYTES:
        page.add(f"[hive: log skipped ahead to its last {MAX_BEHIND_BYTES} bytes]")
        offset = size - MAX_BEHIND_BYTES
        f.seek(offset)
        offset += len(f.readline(MAX_LINE_BYTES))  # the rest of a line begun before
    f.seek(offset)
    data = f.read(min(size - offset, MAX_PAGE_BYTES))
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            if len(data) - start > MAX_LINE_BYTES and page.add(bounded(data[start:])):
                return offset + len(data)  # an endless line: shown cut, its rest later
            return offset + start
        if not page.add(bounded(data[start:nl])):
            return offset + start
        start = nl + 1


def tail_lines(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` whole lines of a file, and the offset where following starts.
    A missing file is empty; so is a link, or anything but a regular file."""
    try:
        f = safefs.open_regular(path.parent, path.name)
    except OSError:
        return [], 0
    with f:
        return _tail(f, lines)


def read_from(path: Path, offset: int, max_bytes: int) -> tuple[int, bytes]:
    """The file's size and up to ``max_bytes`` from ``offset``.

    A missing file, a link, or anything but a regular file reads as empty (size 0)."""
    try:
        f = safefs.open_regular(path.parent, path.name)
    except OSError:
        return 0, b""
    with f:
        size = os.fstat(f.fileno()).st_size
        if size <= offset:
            return size, b""
        f.seek(offset)
        return size, f.read(min(size - offset, max_bytes))


# --- journald -----------------------------------------------------------------------------


async def _read_journal(agent: str, lines: int, after: str) -> dict[str, Any]:
    argv = journalctl_argv(agent, lines, uid=os.getuid(), after=after)
    page = _Page(lines, newest=not after)
    cursor = after
    errors = bytearray()
    try:
        with trio.fail_after(JOURNALCTL_SECONDS):
            async with trio.open_nursery() as nursery:
                pipe = subprocess.PIPE
                run = partial(trio.run_process, argv, stdin=subprocess.DEVNULL,
                              stdout=pipe, stderr=pipe, check=False)  # fmt: skip
                process: trio.Process = await nursery.start(run)
                nursery.start_soon(_collect, process.stderr, errors)
                try:
                    cursor = await _entries(process, page, cursor)
                finally:
                    process.kill()  # done, or the page is full: the rest is not read
    except trio.TooSlowError:
        why = f"journalctl did not answer in {JOURNALCTL_SECONDS:g} s"
        raise LogError("unavailable", why) from None
    except OSError as exc:
        raise LogError("unavailable", f"cannot run journalctl: {exc}") from None
    if process.returncode not in (0, -9) and not page.lines:
        said = errors.decode("utf-8", "replace").strip().splitlines()[:1] or ["no reason given"]
        raise LogError("unavailable", f"journalctl failed ({process.returncode}): {said[0]}")
    return {"lines": list(page.lines), "cursor": cursor, "more": page.full}


async def _entries(process: trio.Process, page: _Page, cursor: str) -> str:
    """Each entry journalctl prints, rendered into ``page``; the cursor of the last one
    that fit."""
    assert process.stdout is not None
    async for raw in streams.lines(process.stdout, MAX_ENTRY_BYTES):
        if isinstance(raw, streams.TruncatedLine):
            page.add(f"[hive: a journal entry of {len(raw) + raw.dropped} bytes skipped]")
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if not page.add_all(entry_lines(entry)):
            break
        cursor = str(entry.get("__CURSOR", cursor))
    return cursor


async def _collect(stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
    while stream is not None and (data := await stream.receive_some(4096)):
        if len(into) < 4096:
            into += data


def _text(value: object) -> str:
    if isinstance(value, list):  # journald gives binary or control-laden values as bytes
        return bytes(b for b in value if isinstance(b, int) and 0 <= b < 256).decode(
            "utf-8", "replace"
        )
    return "" if value is None else str(value)


def entry_lines(entry: dict[str, Any]) -> list[str]:
    """A journal entry as the viewers show it: the lines hive.agentlog would have written
    to agent.log for it.

    >>> entry_lines({"MESSAGE": "hi", "TURN": "3", "HIVE_STREAM": "stderr",
    ...              "__REALTIME_TIMESTAMP": "0"})[0].endswith(" turn=3 hi")
    True
    """
    try:
        when = agentlog.stamp(int(str(entry.get("__REALTIME_TIMESTAMP"))) / 1e6)
    except ValueError:
        when = "?"
    text = _text(entry.get("MESSAGE"))
    if entry.get("HIVE_STREAM") == "stderr":  # one line when hive.agentlog sent it
        turn = _text(entry.get("TURN")) or "?"
        pieces = text.split("\n")[: agentlog.MAX_NOTE_LINES]
        shown = [agentlog.stderr_line(when, turn, piece) for piece in pieces]
    else:
        shown = agentlog.note_lines(when, text)
    return [bounded(line.encode("utf-8", "replace")) for line in shown]
