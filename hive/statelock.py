"""One supervisor per state dir: an exclusive lock on ``STATE_DIR/supervisor.lock``.

A second daemon on the same state dir would take over the agents' sockets and end the
first one's running turns as interrupted (``hive.daemon.prepare_state``) while they still
run. The lock is taken before anything else touches the state dir: by ``hive-supervisor``'s
pre-flight (to refuse in one line) and again by ``prepare_state`` (every daemon, the demo
included; a no-op in the process that holds it). The file holds the holder's pid, for the
message only: the kernel releases the lock when its process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

# Held (open) for as long as this process lives, per state dir. O_CLOEXEC: agents and
# other children never inherit it.
_HELD: dict[Path, int] = {}


class StateDirBusy(RuntimeError):
    """Another process holds this state dir."""


def lock_state_dir(state_dir: Path) -> None:
    """Take ``state_dir`` for this process, or raise StateDirBusy naming the holder's pid
    (OSError: the dir cannot be made or the lock file opened)."""
    state_dir = state_dir.resolve()
    if state_dir in _HELD:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusy(
            f"another hive-supervisor (pid {holder}) is running on {state_dir}; stop it "
            "first (two on one state dir would take each other's agents)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[state_dir] = fd
