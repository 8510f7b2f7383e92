"""Where a message's time goes: a timestamp at each hop, for diagnosing latency tails.

Off unless the supervisor starts with ``HIVE_HOP_TRACE`` naming a file; then every message
gets a ``time.perf_counter()`` stamp at each hop on its way to a reader, kept in memory and
written to that file (JSON: ``[[hop, message_id, seconds], ...]``) when the process exits.
``perf_counter`` is the system's monotonic clock on Linux, so a client in another process
can put its own send and receive times beside these (``bench/bench_recv_latency.py
--trace``). Off, each hop costs one module attribute test. The file holds ids and times,
never bodies. At most ``MAX_STAMPS`` are kept (the first ones: a benchmark's run), about
120 MB; the file is written beside its name and renamed into place, mode 0600.

The hops, in order:

- ``accepted``: the Bus gave the message its id (the Bus's thread);
- ``committed``: its transaction committed (the Store's thread);
- ``lane``: the committing thread answered a parked recv with it (hive.actors.recv_lane),
  or ``to_agent``: no recv was parked, its Agent was told;
- ``handed``: the Agent handed it to a recv (the Agent's thread);
- ``replied``: the recv's reply is being written to its socket (the trio thread).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Iterable

PATH = os.environ.get("HIVE_HOP_TRACE", "")
ENABLED = bool(PATH)
MAX_STAMPS = 1_000_000
# Appends from several threads: list.extend is atomic under the GIL.
_stamps: list[tuple[str, int, float]] = []


def stamp(hop: str, ids: Iterable[int]) -> None:
    """The messages ``ids`` pass ``hop`` now (call only when ``ENABLED``)."""
    if len(_stamps) >= MAX_STAMPS:
        return  # a trace is for a run of a benchmark, not for a daemon's life
    now = time.perf_counter()
    _stamps.extend((hop, i, now) for i in ids)


def dump(path: str) -> None:
    """Write the stamps to ``path`` whole or not at all (a kill mid-write leaves the old
    file or none, not half of one)."""
    partial = f"{path}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_stamps, f)
    os.replace(partial, path)


if ENABLED:
    atexit.register(dump, PATH)
