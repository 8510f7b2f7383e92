"""The end of an agent's log file, for hivectl logs and the dashboard's log viewer."""

from __future__ import annotations

import os
from pathlib import Path


def tail_lines(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of a file, and the file's size (where following starts).

    A missing file is empty. So is a symlink: an agent owns its directory and could point
    its log at a file it must not read through the operator's eyes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, OSError):
        return [], 0
    with os.fdopen(fd, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        block, data = 8192, b""
        pos = size
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            block *= 2
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:], size
