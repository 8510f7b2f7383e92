"""Files in an agent's own directory, opened without following links.

The supervisor runs as root; a sandboxed agent owns its directory and can put a symlink
where the supervisor expects a file (``agent.log -> /etc/passwd``) or a directory
(``state -> /etc``). Every path below the agent's root is therefore walked one component
at a time with O_NOFOLLOW, so a link makes the call fail instead of reaching out.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_text_atomic(root, "state/x.txt", "hi")
>>> read_text(root, "state/x.txt")
'hi'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(root: Path, parents: tuple[str, ...], create: bool) -> int:
    """A descriptor of root/parents..., refusing links at every step."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parents:
            if part in ("", ".", ".."):
                raise ValueError(f"unsafe path component {part!r}")
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _split(relative: str | Path) -> tuple[tuple[str, ...], str]:
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute():
        raise ValueError(f"{relative!r} must be a relative path")
    return parts[:-1], parts[-1]


def open_append(root: Path, relative: str | Path, mode: int = 0o644) -> TextIO:
    parents, name = _split(relative)
    dir_fd = _walk(root, parents, create=True)
    try:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
    finally:
        os.close(dir_fd)
    return os.fdopen(fd, "a", encoding="utf-8")


def read_text(root: Path, relative: str | Path) -> str:
    """The file's text; FileNotFoundError if absent, OSError (ELOOP) if it is a link."""
    parents, name = _split(relative)
    dir_fd = _walk(root, parents, create=False)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def write_text_atomic(root: Path, relative: str | Path, text: str, mode: int = 0o644) -> None:
    """Replace the file with ``text`` in one rename, both ends inside the same directory."""
    parents, name = _split(relative)
    dir_fd = _walk(root, parents, create=True)
    try:
        tmp = f".{name}.{os.getpid()}.tmp"
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # rename() replaces a link named ``name`` itself; it never writes through it.
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
