"""Live feeds from the StateHub to slow consumers (admin `subscribe`, dashboard SSE).

The hub never waits for a consumer. Each update hops to the trio thread, where the feed
checks how far its consumer is behind; past the limit it drops updates and, once the
consumer catches up, sends one ``gap`` marker so the consumer knows to re-list.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hive.io.bridge import IoBridge

_sub_ids = itertools.count(1)


def next_sub_id() -> int:
    return next(_sub_ids)


class Feed:
    """One consumer's live feed of hub updates: drops past ``limit`` behind, then marks the gap."""

    def __init__(
        self,
        bridge: IoBridge,
        sink: Callable[[dict[str, Any]], object],
        backlog: Callable[[], int],
        limit: int = 1000,
    ) -> None:
        self.bridge = bridge
        self.sink = sink  # trio thread: queue one item for the consumer
        self.backlog = backlog  # trio thread: how many items the consumer has not taken
        self.limit = limit
        self.gap = False
        self.closed = False
        self.dropped = 0

    def deliver(self, update: dict[str, Any]) -> bool:
        """Hub thread. False tells the hub to forget this subscriber."""
        if self.closed:
            return False
        self.bridge.call_soon(self._emit, update)
        return True

    def _emit(self, update: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.backlog() >= self.limit:
            self.gap = True
            self.dropped += 1
            return
        if self.gap:
            self.gap = False
            self.sink({"kind": "gap", "seq": update.get("seq"), "dropped": self.dropped})
        self.sink(update)
