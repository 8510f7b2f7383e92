"""An agent's log file, read for hivectl logs and the dashboard's log viewer.

``agent.log`` sits in the agent's own directory, so the agent can replace it with a link to
a file it must not read through the operator's eyes (the operator token, hive.db) or with a
FIFO that would hang the reader. Every read goes through ``hive.safefs.open_regular``: no
link is followed, and only a regular file is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from hive import safefs

# The most read from the end of a log for its last lines: the agent writes the file, and a
# sparse 2 GiB file without a newline must not be read whole looking for one.
MAX_TAIL_BYTES = 4 << 20


def tail_lines(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of a file (within its last MAX_TAIL_BYTES), and the file's
    size (where following starts).

    A missing file is empty; so is a link, or anything but a regular file."""
    try:
        f = safefs.open_regular(path.parent, path.name)
    except OSError:
        return [], 0
    with f:
        size = f.seek(0, os.SEEK_END)
        block, data = 8192, b""
        pos = size
        while pos > 0 and data.count(b"\n") <= lines and len(data) < MAX_TAIL_BYTES:
            step = min(block, pos, MAX_TAIL_BYTES - len(data))
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            block *= 2
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:], size


def read_from(path: Path, offset: int, max_bytes: int) -> tuple[int, bytes]:
    """The file's size and up to ``max_bytes`` from ``offset`` (for following a log).

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
