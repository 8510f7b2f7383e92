"""Server-sent events from the StateHub: ``GET /api/stream?kinds=agent,message``.

Streams that want the same kinds share one hub subscription; each applies a ``Feed``'s
backlog rule (hive.io.subscriptions): the hub never waits for a browser. The first event
is a snapshot of the keyed kinds; then every change, in order, as
``{"seq", "kind", "key", "data"}``. A client that falls more than ``backlog`` updates
behind gets one ``gap`` event and the stream ends; EventSource reconnects and starts again
from a fresh snapshot. If the hub itself restarts the stream ends the same way.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from hive.io.subscriptions import Feed, next_sub_id

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
RECONNECT_MS = 1000
KIND_RE = re.compile(r"^[a-z][a-z_]{0,39}$")


def parse_kinds(raw: str | None) -> frozenset[str] | None:
    """``kinds=agent,message`` -> the set; absent or empty -> None (everything)."""
    if not raw:
        return None
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    bad = [k for k in kinds if not KIND_RE.match(k)]
    if bad or len(kinds) > 32:
        raise ValueError(
            f"bad kinds {', '.join(bad) or raw!r}: a comma-separated list of lowercase words"
        )
    return frozenset(kinds) if kinds else None


def format_event(item: dict[str, Any]) -> bytes:
    seq = item.get("seq")
    head = f"id: {seq}\n" if isinstance(seq, int) else ""
    return f"{head}data: {json.dumps(item, separators=(',', ':'), default=str)}\n\n".encode()


class EncodedCache:
    """One hub update goes to every open stream as the same dict: encode it once.

    Keyed by the update's seq; an entry counts only for that very object (a restarted hub
    reuses seqs), and holding the object keeps that identity check sound."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.entries: OrderedDict[int, tuple[dict[str, Any], bytes]] = OrderedDict()

    def encode(self, item: dict[str, Any]) -> bytes:
        seq = item.get("seq")
        if not isinstance(seq, int) or item.get("kind") in ("snapshot", "gap"):
            return format_event(item)
        hit = self.entries.get(seq)
        if hit is not None and hit[0] is item:
            return hit[1]
        data = format_event(item)
        self.entries[seq] = (item, data)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return data


_cache = EncodedCache()


class EventStream:
    """One browser's feed: a queue filled on the trio thread and drained by the response.

    Updates come from a ``SharedSubscription`` and pass through this stream's own ``Feed``
    logic (backlog limit, one ``gap`` marker); nothing is passed on before the stream's
    snapshot, which covers everything published up to it."""

    def __init__(
        self,
        ctx: HiveContext,
        kinds: frozenset[str] | None,
        backlog: int = 1000,
        registry: StreamRegistry | None = None,
    ) -> None:
        self.ctx = ctx
        self.kinds = kinds
        self.registry = registry
        self.queue: deque[dict[str, Any]] = deque()
        self.wake = trio.Event()
        self.closed = False
        self.ready = registry is None
        self.feed = Feed(ctx.io, sink=self._push, backlog=lambda: len(self.queue), limit=backlog)
        self.hub_ref: object = None

    def _push(self, item: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.append(item)
            self.wake.set()

    def offer(self, update: dict[str, Any]) -> None:
        """Trio thread: one update from the shared subscription."""
        if self.ready:
            self.feed._emit(update)  # the Feed's backlog and gap rules, minus its thread hop

    def _snapshot(self, snap: dict[str, Any]) -> None:
        # Trio thread. Updates up to the snapshot's seq reached us before it (the hub
        # answers in order, and every hop is FIFO) and were dropped; later ones follow.
        if not self.closed:
            self._push({"kind": "snapshot", **snap})
            self.ready = True

    def open(self) -> bool:
        """Join the shared subscription for these kinds and ask for a snapshot."""
        from hive.actors.hub import GetSnapshot

        if self.registry is None or not self.registry.join(self):
            return False
        io = self.ctx.io
        return self.ctx.refs.tell(
            "hub", GetSnapshot(lambda snap: io.call_soon(self._snapshot, snap), self.kinds)
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.feed.closed = True
        self.wake.set()
        if self.registry is not None:
            self.registry.leave(self)

    async def events(self) -> AsyncIterator[bytes]:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        try:
            while not self.closed:
                with trio.move_on_after(KEEPALIVE_SECONDS):
                    await self.wake.wait()
                self.wake = trio.Event()
                if self.closed:
                    return
                if not self.queue:
                    if self.ctx.refs.get("hub") is not self.hub_ref:
                        # A restarted hub has forgotten us: make the client start over.
                        yield format_event({"kind": "gap", "reason": "hub restarted"})
                        return
                    yield b": keepalive\n\n"
                    continue
                chunks = []
                ended = False
                while self.queue:
                    item = self.queue.popleft()
                    chunks.append(_cache.encode(item))
                    if item.get("kind") == "gap":
                        ended = True
                        break
                yield b"".join(chunks)
                if ended:
                    return
        finally:
            self.close()


class SharedSubscription:
    """One hub subscription for every open stream that wants the same kinds: the hub makes
    one delivery and one hop to the trio thread per update, however many dashboards are
    open, and each stream applies its own backlog limit."""

    def __init__(self, ctx: HiveContext, kinds: frozenset[str] | None) -> None:
        self.ctx = ctx
        self.kinds = kinds
        self.members: set[EventStream] = set()
        self.sub_id = next_sub_id()
        self.hub_ref: object = None
        self.closed = False

    def deliver(self, update: dict[str, Any]) -> bool:
        """Hub thread. False tells the hub to forget this subscription."""
        if self.closed:
            return False
        self.ctx.io.call_soon(self._fan_out, update)
        return True

    def _fan_out(self, update: dict[str, Any]) -> None:
        for member in list(self.members):
            member.offer(update)

    def open(self) -> bool:
        from hive.actors.hub import Subscribe

        self.hub_ref = self.ctx.refs.get("hub")
        return self.ctx.refs.tell("hub", Subscribe(self.sub_id, self.kinds, self.deliver))

    def close(self) -> None:
        from hive.actors.hub import Unsubscribe

        if not self.closed:
            self.closed = True
            self.ctx.refs.tell("hub", Unsubscribe(self.sub_id))


class StreamRegistry:
    """Every open stream and the shared subscriptions behind them, so shutdown can end
    them all before the server stops."""

    def __init__(self) -> None:
        self.streams: set[EventStream] = set()
        self.shared: dict[frozenset[str] | None, SharedSubscription] = {}

    def join(self, stream: EventStream) -> bool:
        shared = self.shared.get(stream.kinds)
        if shared is not None and stream.ctx.refs.get("hub") is not shared.hub_ref:
            shared.close()  # the hub restarted since: subscribe afresh
            shared = None
        if shared is None:
            shared = SharedSubscription(stream.ctx, stream.kinds)
            if not shared.open():
                return False
            self.shared[stream.kinds] = shared
        shared.members.add(stream)
        stream.hub_ref = shared.hub_ref
        self.streams.add(stream)
        return True

    def leave(self, stream: EventStream) -> None:
        self.streams.discard(stream)
        shared = self.shared.get(stream.kinds)
        if shared is not None:
            shared.members.discard(stream)
            if not shared.members:
                shared.close()
                del self.shared[stream.kinds]

    def close_all(self) -> None:
        for stream in list(self.streams):
            stream.close()
        for shared in list(self.shared.values()):
            shared.close()
        self.streams.clear()
        self.shared.clear()
