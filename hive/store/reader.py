"""Read-only access for the IO side (admin socket, dashboard), off the trio thread.

apsw connections belong to one thread at a time, so each worker thread keeps its own
read-only connection. Callers run queries with ``await reader.run(fn)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from hive.store.database import Queries, connect

T = TypeVar("T")


class Reader:
    """Read-only queries for the trio side, run on worker threads (one connection each)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._local = threading.local()
        self._limiter = trio.CapacityLimiter(4)

    def _queries(self) -> Queries:
        q: Queries | None = getattr(self._local, "queries", None)
        if q is None:
            q = Queries(connect(self.db_path, readonly=True))
            self._local.queries = q
        return q

    def run_sync(self, fn: Callable[[Queries], T]) -> T:
        return fn(self._queries())

    async def run(self, fn: Callable[[Queries], T]) -> T:
        return await trio.to_thread.run_sync(self.run_sync, fn, limiter=self._limiter)
