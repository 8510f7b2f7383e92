"""hive-supervisor with its state dir on a small tmpfs that only it can see.

    HIVE_TEST_SMALLFS_KIB=4096 HIVE_TEST_RUN_DIR=/tmp/x/run \\
        python -m tests.smallfs_daemon --config hive.toml --state-dir state --no-dashboard

Same arguments as hive-supervisor (and ``HIVE_TEST_SMALLFS_SEED=DIR``: copy DIR's files
into the fresh tmpfs first; ``HIVE_TEST_SMALLFS_FILL=1``: then fill it up;
``HIVE_TEST_SMALLFS_LIST=1``: at exit, one last stderr line lists the state dir's files, which
vanish with the namespace). Before anything
else the process enters a mount namespace of its own (private propagation, so nothing it
mounts reaches the host) and mounts a tmpfs of ``HIVE_TEST_SMALLFS_KIB`` KiB on the state
dir; the sockets go to ``HIVE_TEST_RUN_DIR``, on the host's file system, so clients outside
reach them. The host sees the state dir's files through ``/proc/PID/root``: a test fills
the disk, and reads the database, there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys

from hive.cli import supervisor

CLONE_NEWNS = 0x00020000


def own_mount_namespace() -> None:
    """unshare(CLONE_NEWNS) with private propagation: Python 3.11 has no os.unshare."""
    before = os.readlink("/proc/self/ns/mnt")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    if os.readlink("/proc/self/ns/mnt") == before:
        raise SystemExit("smallfs_daemon: still in the host's mount namespace; not mounting")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def fill(path: str, size_kib: int) -> None:
    """Write ``path`` until the file system is full (bounded by its size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(size_kib * 2):
            os.write(fd, b"\0" * 1024)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def state_dir_arg(argv: list[str]) -> str:
    return argv[argv.index("--state-dir") + 1]


if __name__ == "__main__":
    own_mount_namespace()
    state = os.path.abspath(state_dir_arg(sys.argv))
    os.makedirs(state, exist_ok=True)
    size = int(os.environ["HIVE_TEST_SMALLFS_KIB"])
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}k,mode=0755", "tmpfs", state], check=True
    )
    if os.environ.get("HIVE_TEST_SMALLFS_SEED"):
        seed = os.environ["HIVE_TEST_SMALLFS_SEED"]
        shutil.copytree(seed, state, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock"))
    if os.environ.get("HIVE_TEST_SMALLFS_FILL") == "1":
        fill(os.path.join(state, "filler"), size)
    sys.argv += ["--run-dir", os.environ["HIVE_TEST_RUN_DIR"]]
    try:
        supervisor.main()
    finally:
        if os.environ.get("HIVE_TEST_SMALLFS_LIST") == "1":
            print("smallfs files:", " ".join(sorted(os.listdir(state))), file=sys.stderr)
