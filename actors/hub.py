"""StateHub: fans every state change out to subscribers (dashboard SSE, hivectl subscribe).

It keeps the latest value of every keyed kind ('agent' rows, 'approval's, ...) so a new
subscriber starts from a snapshot, then gets each change in order with a sequence number.
Delivery callbacks must not block: the IO side queues, and marks a gap when a slow reader
falls behind, instead of holding up the hive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from hive.actors.base import HiveContext, InjectFault, SupervisedActor, tell_quietly
from hive.io.subscriptions import next_sub_id

log = logging.getLogger(__name__)

# Kinds whose latest value per key is kept for snapshots.
SNAPSHOT_KINDS = frozenset({"agent", "approval", "question", "draft"})


@dataclass(frozen=True)
class Publish:
    """A change of state for the subscribers: item ``key`` of ``kind`` is now ``data``."""

    kind: str
    key: str
    data: Mapping[str, Any] | None  # None: the keyed item is gone; 'agent': hive.status.AgentStatus


@dataclass(frozen=True)
class Subscribe:
    """Start a feed of updates (of ``kinds``, or all) for a subscriber."""

    sub_id: int
    kinds: frozenset[str] | None  # None: everything
    # deliver(update) -> False once the subscriber has gone away
    deliver: Callable[[dict[str, Any]], bool]
    on_snapshot: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class Unsubscribe:
    """End the feed ``sub_id``."""

    sub_id: int


@dataclass(frozen=True)
class GetSnapshot:
    """Ask for the current state (of ``kinds``, or all) once."""

    reply: Callable[[dict[str, Any]], None]
    kinds: frozenset[str] | None = None


class StateHubActor(SupervisedActor):
    """The latest state of everything the dashboard shows, and the feeds of its changes."""

    child_id = "hub"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        self.seq = 0
        self.latest: dict[str, dict[str, Mapping[str, Any]]] = {k: {} for k in SNAPSHOT_KINDS}
        self.subs: dict[int, Subscribe] = ctx.hub_subscribers

    def on_start(self) -> None:
        # Subscribers that outlived a previous hub missed whatever it had not delivered:
        # a gap tells each to re-read the state (list / snapshot).
        for sub in list(self.subs.values()):
            try:
                sub.deliver({"seq": self.seq, "kind": "gap", "key": "", "data": None})
            except Exception:
                log.exception("hub: subscriber %s failed", sub.sub_id)

    def snapshot(self, kinds: frozenset[str] | None = None) -> dict[str, Any]:
        items = {k: list(v.values()) for k, v in self.latest.items() if kinds is None or k in kinds}
        return {"seq": self.seq, "items": items}

    def _update_interest(self) -> None:
        kinds: set[str] = set()
        for sub in self.subs.values():
            kinds |= sub.kinds if sub.kinds is not None else {"*"}
        self.ctx.hub_interest = frozenset(kinds)  # one reference swap: safe to read anywhere

    def receive(self, message: Any) -> Any:
        match message:
            case Publish(kind=kind, key=key, data=data):
                self.seq += 1
                if kind in self.latest:
                    if data is None:
                        self.latest[kind].pop(key, None)
                    else:
                        self.latest[kind][key] = data
                update = {"seq": self.seq, "kind": kind, "key": key, "data": data}
                gone = []
                for sub in self.subs.values():
                    if sub.kinds is None or kind in sub.kinds:
                        try:
                            alive = sub.deliver(update)
                        except Exception:
                            log.exception("hub: subscriber %s failed", sub.sub_id)
                            alive = False
                        if not alive:
                            gone.append(sub.sub_id)
                for sub_id in gone:
                    self.subs.pop(sub_id, None)
                if gone:
                    self._update_interest()
            case InjectFault():
                self.injected(message)
            case Subscribe():
                self.subs[message.sub_id] = message
                self._update_interest()
                if message.on_snapshot is not None:
                    message.on_snapshot(self.snapshot(message.kinds))
            case Unsubscribe(sub_id=sub_id):
                self.subs.pop(sub_id, None)
                self._update_interest()
            case GetSnapshot(reply=reply, kinds=kinds):
                reply(self.snapshot(kinds))
            case _:
                log.warning("hub: unexpected message %r", message)
        return None


@dataclass(frozen=True)
class HubUpdate:
    """One update of a HubFeed, told to the actor that listens."""

    update: dict[str, Any]


class HubFeed:
    """An actor's subscription to the StateHub (the Stats and Attention actors): each update
    is told to the actor as HubUpdate; ``replay`` kinds' snapshot items come first, as
    updates. A restarted hub forgets its subscribers: call ``renew`` from a timer."""

    def __init__(
        self, ctx: HiveContext, kinds: frozenset[str], replay: tuple[str, ...] = ()
    ) -> None:
        self.ctx = ctx
        self.kinds = kinds
        self.replay = replay
        self.sub_id = 0
        self.hub_ref: object = None

    def start(self, me: pykka.ActorRef[Any]) -> None:
        self.sub_id = next_sub_id()
        self.hub_ref = self.ctx.refs.get("hub")

        def deliver(update: dict[str, Any]) -> bool:
            try:
                me.tell(HubUpdate(update))
            except pykka.ActorDeadError:
                return False
            return True

        def snapshot(snap: dict[str, Any]) -> None:
            for kind in self.replay:
                for data in snap["items"].get(kind, []):
                    deliver({"kind": kind, "key": str(data.get("id")), "data": data})

        self.ctx.refs.tell("hub", Subscribe(self.sub_id, self.kinds, deliver, snapshot))

    def renew(self, me: pykka.ActorRef[Any]) -> None:
        """Subscribe again if the hub is not the one subscribed to (it restarted)."""
        if self.ctx.refs.get("hub") is not self.hub_ref:
            self.start(me)

    def stop(self) -> None:
        self.ctx.refs.tell("hub", Unsubscribe(self.sub_id))


@dataclass(frozen=True)
class FeedTick:
    """A HubFedActor's timer: renew the hub subscription, prune now and then."""


class HubFedActor(SupervisedActor):
    """An actor that derives a table from the StateHub's updates (the Stats and Attention
    actors): its ``feed`` starts and stops with it, and every ``tick_seconds`` a FeedTick
    renews the subscription (a restarted hub forgets its subscribers) and, every
    ``prune_every_seconds``, calls ``prune``. Subclasses handle ``HubUpdate`` and pass
    ``FeedTick`` to ``tick``."""

    tick_seconds = 30.0
    prune_every_seconds = 600.0

    def __init__(self, ctx: HiveContext, feed: HubFeed) -> None:
        super().__init__(ctx)
        self.feed = feed
        self.last_prune = 0.0

    def on_start(self) -> None:
        self.feed.start(self.actor_ref)
        self._arm_tick()

    def on_stop(self) -> None:
        self.feed.stop()

    def _arm_tick(self) -> None:
        me = self.actor_ref  # a dead actor's timer tells nobody: one chain per actor
        self.ctx.io.call_later(self.tick_seconds, lambda: tell_quietly(me, FeedTick()))

    def tick(self) -> None:
        self.feed.renew(self.actor_ref)
        now = time.time()
        if now - self.last_prune >= self.prune_every_seconds:
            self.last_prune = now
            self.prune(now)
        self._arm_tick()

    def prune(self, now: float) -> None:
        """Drop what this actor's table keeps no longer (called from ``tick``)."""
