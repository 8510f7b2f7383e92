"""A disk that keeps only what was fsynced: an apsw VFS for power-loss tests.

SIGKILL of a process is not a power cut: the kernel still holds every write the process
made, synced or not, and writes it out later. This VFS moves that page cache into the
process itself, so that killing the process loses exactly what a power cut would:

- every database file (main db, ``-wal``, ``-journal``) has an in-memory image, shared by
  all connections of the process that open the same file (SQLite's own connections see
  one another's writes, as they would through the kernel);
- xRead, xWrite, xTruncate and xFileSize act on the image only;
- xSync copies the image's dirty ranges (and its size) to the real file, then fsyncs it.
  Nothing that was not synced ever reaches the real file.

Locks, the ``-shm`` shared memory and the other file controls go to the real file through
the base VFS, so processes still coordinate as usual. Temporary files pass through whole.
A fresh process that opens the real files afterwards finds no live ``-shm`` holder and
rebuilds the WAL index from the ``-wal`` file, as after a real power cut.

Not modelled: a write that is half on disk (a torn sector) and the loss of an unsynced
directory entry: files are created and deleted at once on the real disk.

    import powerloss_vfs
    powerloss_vfs.install()   # the default VFS of every connection this process opens
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import apsw

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

VFS_NAME = "powerloss"
BASE_VFS = "unix"

# The files whose loss matters; temp files, sub-journals and the like pass through.
DURABLE_KINDS = (
    apsw.SQLITE_OPEN_MAIN_DB
    | apsw.SQLITE_OPEN_MAIN_JOURNAL
    | apsw.SQLITE_OPEN_WAL
    | apsw.SQLITE_OPEN_SUPER_JOURNAL
)
# File controls that would size the real file behind our back (unix extends it with
# zeros in chunks): the image decides the size, the real file follows at xSync.
IGNORED_FILE_CONTROLS = frozenset({apsw.SQLITE_FCNTL_SIZE_HINT, apsw.SQLITE_FCNTL_CHUNK_SIZE})
WRITE_CHUNK = 65536


class Image:
    """One file as the process sees it: its bytes, and which of them the disk lacks."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.disk_size = len(data)  # the real file's size as last synced
        self.dirty: list[tuple[int, int]] = []  # [start, end) written since the last sync
        self.lock = threading.Lock()  # the bytes and the dirty list
        self.sync_lock = threading.Lock()  # one xSync at a time copies this file out

    def read(self, amount: int, offset: int) -> bytes:
        with self.lock:
            return bytes(self.data[offset : offset + amount])

    def write(self, data: bytes, offset: int) -> None:
        with self.lock:
            end = offset + len(data)
            if end > len(self.data):
                self.data.extend(bytes(end - len(self.data)))
            self.data[offset:end] = data
            self.dirty.append((offset, end))

    def truncate(self, size: int) -> None:
        with self.lock:
            if size < len(self.data):
                del self.data[size:]
            else:
                self.data.extend(bytes(size - len(self.data)))

    def size(self) -> int:
        with self.lock:
            return len(self.data)

    def unsynced(self) -> tuple[list[tuple[int, bytes]], int]:
        """What xSync must write: the dirty ranges, merged and cut to the current size,
        with their bytes; and the size the real file must have. Clears the dirty list."""
        with self.lock:
            size = len(self.data)
            merged: list[list[int]] = []
            for start, end in sorted(self.dirty):
                end = min(end, size)
                if start >= end:
                    continue
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self.dirty = []
            return [(start, bytes(self.data[start:end])) for start, end in merged], size


_images: dict[str, Image] = {}
_images_lock = threading.Lock()


def _filename(name: str | apsw.URIFilename) -> str:
    return name.filename() if isinstance(name, apsw.URIFilename) else name


class PowerLossFile(apsw.VFSFile):
    """A database file whose reads and writes stop at the shared image until xSync."""

    def __init__(self, name: str | apsw.URIFilename, flags: list[int]) -> None:
        super().__init__(BASE_VFS, name, flags)  # the real file: locks, shm, fsync
        self.path = _filename(name)
        with _images_lock:
            image = _images.get(self.path)
            if image is None:
                size = super().xFileSize()
                image = Image(super().xRead(size, 0) if size else b"")
                _images[self.path] = image
        self.image = image
        self.readonly = bool(flags[0] & apsw.SQLITE_OPEN_READONLY)

    def xLock(self, level: int) -> None:
        try:
            super().xLock(level)
        except apsw.IOError:
            if not self.readonly:
                raise
            # A read-only handle cannot take a write lock (the last read-only connection
            # tries one at close, to checkpoint): the unix VFS's error, which SQLite then
            # ignores, would surface from Python as an exception at close. Say "busy".
            raise apsw.BusyError("read-only handle") from None

    def xRead(self, amount: int, offset: int) -> bytes:
        # Fewer bytes than asked for: apsw zero-fills and reports a short read, which is
        # what SQLite expects past the end of a file.
        return self.image.read(amount, offset)

    def xWrite(self, data: Buffer, offset: int) -> None:
        self.image.write(bytes(data), offset)

    def xTruncate(self, newsize: int) -> None:
        self.image.truncate(newsize)

    def xFileSize(self) -> int:
        return self.image.size()

    def xSync(self, flags: int) -> None:
        with self.image.sync_lock:
            ranges, size = self.image.unsynced()
            for offset, data in ranges:
                # The unix VFS writes at most 128 KiB per call (SQLite never asks for more).
                for at in range(0, len(data), WRITE_CHUNK):
                    super().xWrite(data[at : at + WRITE_CHUNK], offset + at)
            if size != self.image.disk_size:
                super().xTruncate(size)
            super().xSync(flags)
            self.image.disk_size = size

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op in IGNORED_FILE_CONTROLS:
            return True
        return super().xFileControl(op, ptr)


class PowerLossVFS(apsw.VFS):
    def __init__(self) -> None:
        super().__init__(VFS_NAME, base=BASE_VFS, makedefault=True)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        if name is None or not flags[0] & DURABLE_KINDS:
            return apsw.VFSFile(BASE_VFS, name, flags)
        return PowerLossFile(name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        with _images_lock:
            _images.pop(filename, None)
        super().xDelete(filename, syncdir)


_installed: list[PowerLossVFS] = []


def install() -> None:
    """Make the power-loss VFS the default for every connection this process opens."""
    if not _installed:
        _installed.append(PowerLossVFS())  # apsw unregisters a VFS nobody references
