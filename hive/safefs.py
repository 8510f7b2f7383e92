"""Files in an agent's own directory, opened without following links.

The supervisor runs as root; a sandboxed agent owns its directory and can put a symlink
where the supervisor expects a file (``agent.log -> /etc/passwd``) or a directory
(``state -> /etc``), and can swap one for the other while the supervisor works. Every path
below the agent's root is therefore walked one component at a time from a directory
descriptor with O_NOFOLLOW, so a link makes the call fail instead of reaching out, and a
swap after a step cannot redirect the steps already taken. ``root`` itself
(``<state>/agents/<name>``) sits in a directory only root can write, so it is trusted.

Every read is capped: the size is checked on the opened descriptor (fstat) before a byte is
read, so a sparse 2 GiB file costs nothing but a clear ``FileTooLarge``.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_text_atomic(root, "state/x.txt", "hi")
>>> read_text(root, "state/x.txt")
'hi'
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Reads of agent-written files the supervisor makes without a cap of its own (session id,
# login token): far above what they hold, far below what would hurt.
DEFAULT_MAX_BYTES = 64 * 1024


class FileTooLarge(OSError):
    """An agent-controlled file is bigger than the supervisor will read."""

    def __init__(self, path: str | Path, size: int, cap: int) -> None:
        super().__init__(
            errno.EFBIG, f"{path} is {size} bytes, over the {cap}-byte cap for this file"
        )
        self.path, self.size, self.cap = str(path), size, cap


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
    """The file opened for appending (created if absent). A link is refused (ELOOP), and so
    is anything but a regular file (EINVAL): opening a FIFO for writing would block the
    caller until a reader comes, or feed whoever reads it."""
    parents, name = _split(relative)
    dir_fd = _walk(root, parents, create=True)
    try:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{root / relative} is not a regular file")
    return os.fdopen(fd, "a", encoding="utf-8")


def open_regular(root: Path, relative: str | Path) -> BinaryIO:
    """The file opened for reading; FileNotFoundError if absent, OSError (ELOOP) if it or a
    directory above it is a link, OSError (EINVAL) if it is not a regular file (a FIFO
    would block the reader, a device would stream forever)."""
    parents, name = _split(relative)
    dir_fd = _walk(root, parents, create=False)
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{root / relative} is not a regular file")
    return os.fdopen(fd, "rb")


def read_bytes(root: Path, relative: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, or FileTooLarge (checked before reading) past ``max_bytes``."""
    with open_regular(root, relative) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FileTooLarge(root / relative, size, max_bytes)
        # The file may grow between fstat and read: never take more than the cap.
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(root / relative, len(data), max_bytes)
    return data


def read_text(root: Path, relative: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The file's text; FileNotFoundError if absent, OSError (ELOOP) if it is a link,
    FileTooLarge past ``max_bytes``."""
    return read_bytes(root, relative, max_bytes).decode("utf-8", "replace")


def size_of(root: Path, relative: str | Path) -> int:
    """The size of a regular file (0 when absent), without following links."""
    parents, name = _split(relative)
    try:
        dir_fd = _walk(root, parents, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    finally:
        os.close(dir_fd)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


@contextmanager
def directory(root: Path, relative: str | Path = ".", create: bool = False) -> Iterator[int]:
    """A descriptor of the directory root/relative (created if asked), walked without links."""
    parts = tuple(p for p in Path(relative).parts if p != ".")
    if Path(relative).is_absolute():
        raise ValueError(f"{relative!r} must be a relative path")
    fd = _walk(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def makedirs(root: Path, relative: str | Path) -> None:
    """mkdir -p of root/relative, refusing a link at every step."""
    with directory(root, relative, create=True):
        pass


def unlink(root: Path, relative: str | Path) -> None:
    """Remove a file (a link is removed itself, never its target); absent is fine."""
    parents, name = _split(relative)
    try:
        dir_fd = _walk(root, parents, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dir_fd)


def rename_within(root: Path, relative: str | Path, new_name: str) -> None:
    """Rename a file to ``new_name`` in the same directory (replacing what is there, a link
    included: a rename never follows one); absent is fine."""
    parents, name = _split(relative)
    with directory(root, Path(*parents) if parents else ".") as dir_fd:
        try:
            os.rename(name, new_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            pass


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


def remove_tree(root: Path, relative: str | Path) -> None:
    """Remove root/relative and everything below it (absent is fine; a link there is
    removed itself, never followed).

    The agent decides how deep its tree is: shutil.rmtree recurses once per level and
    fails past Python's recursion limit, leaving the rest behind. GNU ``rm -rf`` walks any
    depth, by descriptor, without following links; it gets the parent as a descriptor
    walked here without links (``/proc/self/fd/N/name``), so no component of the path is
    resolved by name, and ``--one-file-system`` keeps it off anything mounted below."""
    import shutil
    import subprocess

    parents, name = _split(relative)
    if name in ("", ".", ".."):
        raise ValueError(f"unsafe path component {name!r}")
    try:
        dir_fd = _walk(root, parents, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        rm = shutil.which("rm") or "/bin/rm"
        done = subprocess.run(
            [rm, "-rf", "--one-file-system", "--", f"/proc/self/fd/{dir_fd}/{name}"],
            pass_fds=(dir_fd,),
            capture_output=True,
            check=False,
        )
    finally:
        os.close(dir_fd)
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(errno.EIO, f"{root / relative} not fully removed: {why[-1] if why else ''}")


# How deep walk_tree goes below the directory it was given. An agent can make its tree as
# deep as it likes; each level holds two descriptors and two stack frames of the walk, and
# past Python's recursion limit every prepare() (so every turn) failed. What lies deeper was
# made by the agent as its own uid (root writes only near the top), so it is left as is.
MAX_WALK_DEPTH = 128
_TREE_FLAGS = _DIR_FLAGS | os.O_NONBLOCK

# walk_tree's callbacks: on_entry(dir_fd, name, lstat) for each entry that is not a
# directory, on_dir(fd) for each directory reached (the walk's own first).
OnEntry = Callable[[int, str, os.stat_result], None]
OnDir = Callable[[int], None]


def _no_dir_visit(fd: int) -> None:
    pass


def walk_tree(
    dir_fd: int, on_entry: OnEntry, on_dir: OnDir = _no_dir_visit, depth: int = 0
) -> None:
    """Visit the directory ``dir_fd`` and everything below it, down to MAX_WALK_DEPTH, by
    descriptor only: each subdirectory is opened relative to its parent with O_NOFOLLOW, so
    an entry swapped for a link is skipped, never followed; entries gone meanwhile are
    skipped too. A directory at the depth cap is visited, what it holds is not."""
    on_dir(dir_fd)
    if depth >= MAX_WALK_DEPTH:
        return
    for entry in os.scandir(dir_fd):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        if stat.S_ISDIR(st.st_mode):
            # If it was swapped for a link since scandir saw it, O_NOFOLLOW refuses it.
            walk_subtree(dir_fd, entry.name, on_entry, on_dir, depth + 1)
        else:
            on_entry(dir_fd, entry.name, st)


def walk_subtree(
    parent_fd: int, name: str, on_entry: OnEntry, on_dir: OnDir = _no_dir_visit, depth: int = 1
) -> None:
    """walk_tree over the directory ``name`` of ``parent_fd`` (``depth`` levels below the
    walk's start); nothing if it is gone, a link or not a directory."""
    try:
        fd = os.open(name, _TREE_FLAGS, dir_fd=parent_fd)
    except OSError:
        return
    try:
        walk_tree(fd, on_entry, on_dir, depth)
    finally:
        os.close(fd)
