"""The Bus: every message goes through here.

It checks the recipient and the policy, gives the message its id, has the Store commit it
(batched: messages that arrive while a batch commits go in the next), and only then
acknowledges the sender and hands the message to the recipient's Agent actor.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from hive import hoptrace
from hive.actors.base import (
    HiveContext,
    InjectFault,
    Reply,
    SupervisedActor,
)
from hive.actors.forwarder import Queued
from hive.actors.hub import Publish
from hive.actors.store import Write
from hive.config import AgentConfig
from hive.federation.address import split as split_address
from hive.federation.store import queue_outbound
from hive.policy import TokenBucket, check_send
from hive.store import Queries
from hive.wire import OPERATOR, SYSTEM, Envelope, WireError, validate_agent_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Send:
    """A message to deliver: checked (name, permission, rate, caps), stored, then handed on."""

    sender: str
    to: str
    body: str
    kind: str = "message"
    meta: dict[str, Any] = field(default_factory=dict)
    reply: Reply | None = None


@dataclass
class BatchReply:
    """Replies for a chunk of pipelined sends, delivered together once all are decided."""

    deliver: Callable[[list[tuple[int, Any]]], None]
    remaining: int
    results: list[tuple[int, Any]] = field(default_factory=list)

    def add(self, req_id: int, result: Any) -> None:
        self.results.append((req_id, result))
        self.remaining -= 1
        if self.remaining == 0:
            self.deliver(self.results)


@dataclass(frozen=True)
class SendBatch:
    """Sends that one connection pipelined and the socket read in one chunk."""

    sender: str
    items: list[tuple[int, str, str]]  # (request id, to, body)
    deliver: Callable[[list[tuple[int, Any]]], None]


@dataclass(frozen=True)
class SendBatches:
    """The chunks of sends the agent sockets read in one pass of the IO loop, from any
    number of connections: one message to the Bus instead of one per connection."""

    batches: tuple[SendBatch, ...]


@dataclass(frozen=True)
class AgentKnown:
    """An agent exists (or its config changed): it can receive and its policy applies."""

    config: AgentConfig


@dataclass(frozen=True)
class AgentGone:
    """An agent was removed: the Bus forgets it and refuses mail to it."""

    name: str


@dataclass(frozen=True)
class InboxDepth:
    """An agent's inbox depth as it last published it, counting messages up to id
    ``seen_id``. ``inbox_cap`` is checked against it plus what the Bus accepted since."""

    name: str
    depth: int
    seen_id: int


@dataclass(frozen=True)
class _Flush:
    pass


class BusActor(SupervisedActor):
    """Message routing: admits each message (permissions, rate limits, caps) and delivers it."""

    child_id = "bus"

    def __init__(self, ctx: HiveContext, agents: list[AgentConfig]) -> None:
        super().__init__(ctx)
        self.agents: dict[str, AgentConfig] = {a.name: a for a in agents}
        self.buckets: dict[str, TokenBucket] = {}
        self.depths: dict[str, int] = {}  # as the agents last reported
        self.accepted: dict[str, deque[int]] = {}  # ids accepted since those reports
        self.batch: list[tuple[Envelope, Reply | None]] = []
        self.flush_queued = False

    def unfinished(self) -> list[object]:
        # Accepted but not yet handed to the Store: nothing was stored or acknowledged,
        # so the senders are told to try again.
        batch, self.batch = self.batch, []
        err = WireError("unavailable", "the bus restarted before storing this; send again")
        for _, reply in batch:
            if reply is not None:
                reply(err)
        return []

    def receive(self, message: Any) -> Any:
        match message:
            case Send():
                self._send(message)
            case SendBatch():
                self._send_batch(message)
            case SendBatches(batches=batches):
                for batch in batches:
                    self._send_batch(batch)
            case InjectFault():
                self.injected(message)
            case _Flush():
                self.flush_queued = False
                self._flush()
            case AgentKnown(config=cfg):
                self.agents[cfg.name] = cfg
            case AgentGone(name=name):
                self.agents.pop(name, None)
            case InboxDepth(name=name, depth=depth, seen_id=seen_id):
                self.depths[name] = depth
                since = self.accepted.get(name)
                while since and since[0] <= seen_id:
                    since.popleft()
            case _:
                log.warning("bus: unexpected message %r", message)
        return None

    def _send(self, m: Send) -> None:
        try:
            env = self._accept(m)
        except WireError as exc:
            if m.reply is not None:
                m.reply(exc)
            return
        self.batch.append((env, m.reply))
        if not self.flush_queued:
            self.flush_queued = True
            self.actor_ref.tell(_Flush())

    def _send_batch(self, m: SendBatch) -> None:
        collector = BatchReply(m.deliver, len(m.items))
        for req_id, to, body in m.items:
            try:
                env = self._accept(Send(m.sender, to, body))
            except WireError as exc:
                collector.add(req_id, exc)
                continue
            self.batch.append((env, partial(collector.add, req_id)))
        if self.batch and not self.flush_queued:
            self.flush_queued = True
            self.actor_ref.tell(_Flush())

    def _accept(self, m: Send) -> Envelope:
        m, remote = self._route(m)
        if not remote and m.to != OPERATOR and m.to not in self.agents:
            validate_agent_name(m.to)  # a malformed name says so, not just "unknown"
            raise WireError("unknown_agent", f"no agent named '{m.to}'")
        size = len(m.body.encode("utf-8", "surrogatepass"))
        if size > self.ctx.config.max_body_bytes:
            raise WireError(
                "body_too_large",
                f"message body of {size} bytes exceeds the limit of "
                f"{self.ctx.config.max_body_bytes} bytes; send a path to a file instead",
            )
        sender_cfg = self.agents.get(m.sender)
        check_send(sender_cfg, m.sender, m.to)
        to_cfg = self.agents.get(m.to)
        capped = to_cfg is not None and m.sender not in (OPERATOR, SYSTEM)
        if capped and to_cfg is not None:
            depth = self.depths.get(m.to, 0) + len(self.accepted.get(m.to, ()))
            if depth >= to_cfg.inbox_cap:
                raise WireError(
                    "inbox_full",
                    f"agent '{m.to}' has {depth} messages waiting, its inbox_cap of "
                    f"{to_cfg.inbox_cap}; nothing was sent, try again later",
                )
        if sender_cfg is not None and m.sender != SYSTEM:
            bucket = self.buckets.get(m.sender)
            if bucket is None or bucket.per_minute != sender_cfg.rate_limit_per_minute:
                bucket = TokenBucket(float(sender_cfg.rate_limit_per_minute))
                self.buckets[m.sender] = bucket
            if not bucket.take():
                raise WireError(
                    "rate_limited",
                    f"agent '{m.sender}' is over its limit of "
                    f"{sender_cfg.rate_limit_per_minute} messages per minute; "
                    "nothing was sent, try again later",
                )
        if m.to == OPERATOR and self.ctx.operator_mailbox is not None:
            self.ctx.operator_mailbox.admit(m.sender, size)  # or mailbox_full
        env = Envelope(
            id=self.ctx.message_ids.next(),
            sender=m.sender,
            to=m.to,
            body=m.body,
            kind=m.kind,
            meta=dict(m.meta),
        )
        if capped:
            self.accepted.setdefault(m.to, deque()).append(env.id)
        if hoptrace.ENABLED:
            hoptrace.stamp("accepted", (env.id,))
        return env

    def _route(self, m: Send) -> tuple[Send, bool]:
        """``agent@hive`` goes to the outbox (True), unless the hive is this one."""
        agent, hive = split_address(m.to)
        if hive is None:
            return m, False
        fed = self.ctx.config.federation
        if fed is None:
            raise WireError(
                "not_federated",
                f"'{m.to}' is on another hive, and this hive has no [federation] table",
            )
        return (replace(m, to=agent), False) if hive == fed.name else (m, True)

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        envs = [env for env, _ in batch]

        to_operator = [e.id for e in envs if e.to == OPERATOR]
        remote = [e for e in envs if "@" in e.to]
        if remote:
            envs = [e for e in envs if "@" not in e.to]
        outbox: list[Any] = []

        commits = self.ctx.commits

        def insert(q: Queries) -> int:
            q.insert_messages(envs)
            if remote:  # for other hives: into the outbox, in this same transaction
                outbox.extend(queue_outbound(q, remote))
            if to_operator:
                # The operator has no turn loop: a message to them is delivered once it
                # is stored and shown; it must not sit in the pending index forever.
                q.mark_delivered(to_operator, OPERATOR, None)
            return commits.open

        def done(commit: Any, error: BaseException | None) -> None:
            # Runs on the Store's thread, straight after the commit: acks and hand-offs
            # are only tells and reply hops, and skipping a hop back through the Bus
            # takes a thread switch off every message's path. It reads no Bus state.
            if hoptrace.ENABLED:
                hoptrace.stamp("committed", (e.id for e in envs))
            if outbox and error is None:
                self.ctx.refs.tell("forwarder", Queued(tuple(outbox)))
            self._committed(batch, error, commit or 0)

        if not self.ctx.refs.tell("store", Write(insert, done)):
            self._committed(batch, RuntimeError("the store is restarting"), 0)

    def _tell_arrived(self, to: str, envs: list[Envelope], commit: int) -> None:
        """Tell the recipient's Agent; if it has a recv parked in the recv lane, answer
        that recv first-hand, from this (the committing) thread: one thread hop fewer on
        the way to a waiting reader. The Agent is told before the reply leaves, so the
        reader's ack always reaches it after it knows what it acknowledges."""
        from hive.actors.agent import RECV_FRAME_MARGIN, Arrived  # agent imports this module

        budget = self.ctx.config.max_frame_bytes - RECV_FRAME_MARGIN
        recv, wires = self.ctx.recv_lane.take(to, envs, budget)
        handed = None if recv is None else (recv.waiter_id, recv.holder)
        if hoptrace.ENABLED:
            hoptrace.stamp("to_agent" if recv is None else "lane", (e.id for e in envs))
        self.ctx.refs.tell(self.ctx.agent_ref_name(to), Arrived(tuple(envs), commit, handed=handed))
        if recv is not None:
            recv.reply({"messages": wires, "ack_ids": [e.id for e in envs], "more": False})

    def _committed(
        self,
        batch: list[tuple[Envelope, Reply | None]],
        error: BaseException | None,
        commit: int,
    ) -> None:
        if error is not None:
            err = WireError("store_failed", f"message not stored ({error}); nothing was sent")
            for _, reply in batch:
                if reply is not None:
                    reply(err)
            return
        by_recipient: dict[str, list[Envelope]] = defaultdict(list)
        for env, _ in batch:
            by_recipient[env.to].append(env)

        # Every message is a hub update only while someone watches messages: otherwise a
        # flood would cost the hub one update per message for nobody.
        interest = self.ctx.hub_interest
        watched = "message" in interest or "*" in interest

        for to, envs in by_recipient.items():
            if "@" in to:
                continue  # told to the Forwarder (a restarted one reads the outbox)
            if to == OPERATOR:
                for env in envs:
                    self.ctx.refs.tell(
                        "hub", Publish("operator_message", str(env.id), env.to_wire())
                    )
                continue
            # If the agent actor is down, the message is committed and pending: the
            # restarted actor loads it from the store.
            self._tell_arrived(to, envs, commit)
            if watched:
                for env in envs:
                    self.ctx.refs.tell("hub", Publish("message", str(env.id), env.to_wire()))
        # The recipients are told first: whatever a sender does once acknowledged (tell
        # the recipient to recv, say) reaches the recipient's actor after the message.
        for env, reply in batch:
            if reply is not None:
                reply({"id": env.id})
