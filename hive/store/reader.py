"""Read-only access for the IO side (admin socket, dashboard), off the trio thread.

An apsw connection is used by one thread at a time: a read takes an idle read-only
connection from a small pool (or opens one), runs on a worker thread, and gives it back.
The pool outlives trio's worker threads (they end after 10 s idle), so reads open no new
file once the pool is warm: a daemon out of file descriptors still answers them. Callers
run queries with ``await reader.run(fn)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw
import trio

from hive.store.database import Queries, connect
from hive.wire import WireError

T = TypeVar("T")

# Reads at once (the limiter), and so at most this many connections in the pool.
MAX_READERS = 4


class Reader:
    """Read-only queries for the trio side, run on worker threads (pooled connections)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._idle: list[Queries] = []
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(MAX_READERS)

    def _take(self) -> Queries:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return Queries(connect(self.db_path, readonly=True))
        except apsw.CantOpenError as exc:  # no fd left (EMFILE), say
            raise WireError(
                "no_resources", f"the database cannot be opened for reading now: {exc}"
            ) from exc

    def _give_back(self, q: Queries) -> None:
        if not q.conn.getautocommit():  # a transaction left open would pin an old snapshot
            q.conn.close()
            return
        with self._lock:
            if len(self._idle) < MAX_READERS:
                self._idle.append(q)
                return
        q.conn.close()

    def run_sync(self, fn: Callable[[Queries], T]) -> T:
        q = self._take()
        try:
            return fn(q)
        finally:
            self._give_back(q)

    async def run(self, fn: Callable[[Queries], T]) -> T:
        return await trio.to_thread.run_sync(self.run_sync, fn, limiter=self._limiter)
