"""The Forwarder: moves the outbox to JetStream, in order per destination hive.

It decides; the NATS link (hive.federation.link) does the IO. Each destination hive is a
link with its own queue, in sequence order: up to ``max_in_flight`` publishes are out at
once; a PubAck lets a row go (deleted from the outbox in the next write); a failure stops
that link, and once its publishes have all come back it starts again, after
``retry_seconds``, from the oldest row not acknowledged. A row published twice is stored
once (``Nats-Msg-Id`` within JetStream's duplicate window, the receiver's link sequence
beyond it), and the receiver stores a link's messages in sequence order only.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hive.actors.base import HiveContext, Registered, SupervisedActor, tell_quietly
from hive.actors.store import Write
from hive.federation.address import inbound_subject
from hive.federation.store import OutboxRow, forwarded, load_outbox
from hive.store import Queries, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    """Outbox rows just committed (by the Bus, or a refusal by the receiving actor)."""

    rows: tuple[OutboxRow, ...]


@dataclass(frozen=True)
class PubResults:
    """The link's answers to publishes: (row, stored by JetStream, why not)."""

    results: list[tuple[OutboxRow, bool, str]]


@dataclass(frozen=True)
class Depths:
    """Ask for the outbox depth per destination hive (``reply(dict)``)."""

    reply: Any


@dataclass(frozen=True)
class _Retry:
    dest: str


@dataclass(frozen=True)
class _FlushForwarded:
    pass


@dataclass
class LinkQueue:
    """One destination hive: rows not yet PubAcked, in sequence order."""

    waiting: deque[OutboxRow] = field(default_factory=deque)  # not published (again) yet
    in_flight: dict[int, OutboxRow] = field(default_factory=dict)  # seq -> row
    failed: list[OutboxRow] = field(default_factory=list)  # to publish again, first
    last_seq: int = 0  # the highest sequence this actor has seen for the link
    stopped: bool = False  # a publish failed: wait for the others, then retry
    last_error: str = ""

    def depth(self) -> int:
        return len(self.waiting) + len(self.in_flight) + len(self.failed)


class ForwarderActor(SupervisedActor):
    """The outbox's one reader: publishes its rows and deletes them once PubAcked."""

    child_id = "forwarder"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        assert ctx.config.federation is not None
        self.fed = ctx.config.federation
        self.links: dict[str, LinkQueue] = {}
        self.done_ids: list[int] = []
        self.flush_queued = False

    def on_start(self) -> None:
        me = self.actor_ref

        def done(results: list[tuple[Any, bool, str]]) -> None:  # on the link's thread
            tell_quietly(me, PubResults(results))

        self._done = done
        self._load()

    def _load(self) -> None:
        # Its own read: a restarted Forwarder starts from what the outbox holds now.
        conn = connect(self.ctx.config.db_path, readonly=True)
        try:
            after = {dest: q.last_seq for dest, q in self.links.items()}
            rows = load_outbox(Queries(conn), after)
        finally:
            conn.close()
        self._add(rows)

    def receive(self, message: Any) -> Any:
        match message:
            case Queued(rows=rows):
                self._add(rows)
            case PubResults(results=results):
                self._results(results)
            case _Retry(dest=dest):
                self._retry(dest)
            case _FlushForwarded():
                self._flush_forwarded()
            case Depths(reply=reply):
                reply(self.depths())
            case Registered():
                self._load()  # rows committed while this actor was starting
            case _:
                log.warning("forwarder: unexpected message %r", message)
        return None

    def depths(self) -> dict[str, int]:
        return {dest: q.depth() for dest, q in self.links.items()}

    def _add(self, rows: tuple[OutboxRow, ...] | list[OutboxRow]) -> None:
        touched = set()
        for row in rows:
            q = self.links.setdefault(row.dest, LinkQueue())
            if row.seq <= q.last_seq:
                continue  # loaded already
            q.last_seq = row.seq
            q.waiting.append(row)
            touched.add(row.dest)
        for dest in touched:
            self._pump(dest)

    def _pump(self, dest: str) -> None:
        from hive.federation.link import Publication

        q = self.links[dest]
        batch = []
        subject = inbound_subject(dest, self.fed.name)
        while not q.stopped and q.waiting and len(q.in_flight) < self.fed.max_in_flight:
            row = q.waiting.popleft()
            q.in_flight[row.seq] = row
            batch.append(Publication(subject, row.payload, row.msg_id(self.fed.name), row))
        if batch:
            self.ctx.federation.publish(batch, self._done)

    def _results(self, results: list[tuple[OutboxRow, bool, str]]) -> None:
        touched: set[str] = set()
        for row, ok, error in results:
            if self._result(row, ok, error):
                touched.add(row.dest)
        for dest in touched:
            q = self.links[dest]
            if q.stopped and not q.in_flight:
                self._retry_later(dest)
            elif not q.stopped:
                self._pump(dest)
        if self.done_ids and not self.flush_queued:
            self.flush_queued = True
            self.actor_ref.tell(_FlushForwarded())

    def _retry_later(self, dest: str) -> None:
        me = self.actor_ref
        self.ctx.io.call_later(self.fed.retry_seconds, lambda: tell_quietly(me, _Retry(dest)))

    def _result(self, row: OutboxRow, ok: bool, error: str) -> bool:
        """Settle one publish; False if it was not in flight (a stale answer)."""
        q = self.links[row.dest]
        if q.in_flight.pop(row.seq, None) is None:
            return False
        if ok:
            self.done_ids.append(row.id)
        else:
            q.failed.append(row)
            if not q.stopped:
                log.warning("forwarder: publish to %s failed: %s", row.dest, error)
            q.stopped, q.last_error = True, error
        return True

    def _retry(self, dest: str) -> None:
        q = self.links[dest]
        q.failed.sort(key=lambda row: row.seq)
        q.waiting.extendleft(reversed(q.failed))
        q.failed, q.stopped = [], False
        self._pump(dest)

    def _flush_forwarded(self) -> None:
        self.flush_queued = False
        ids, self.done_ids = self.done_ids, []
        if ids:
            # A lost delete only means a second publish after a restart: stored once.
            self.ctx.refs.tell("store", Write(lambda q: forwarded(q, ids)))
