"""The receiving side of federation: messages from other hives into this hive's store.

The NATS link hands over each fetched batch (``Incoming``). This actor decides: the origin
is the last token of the subject (NATS permissions let a hive publish only there, so the
subject is the proof; nothing in the payload is trusted for it), the payload must parse,
and this hive's ``[federation.accept]`` must let the remote sender write to the local
agent. The Store then commits each message exactly once and in its link's order
(hive.federation.store.store_inbound); only then is it acked to JetStream. A refusal is
committed as an event for the remote sender, in the same transaction, and forwarded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hive.actors.base import HiveContext, SupervisedActor
from hive.actors.forwarder import Queued
from hive.actors.store import Write
from hive.federation.address import validate_hive_name
from hive.federation.store import Inbound, claims_refusal, decode, store_inbound
from hive.store import Queries
from hive.wire import OPERATOR, SYSTEM, Envelope, WireError, validate_agent_name

if TYPE_CHECKING:
    from hive.federation.link import Incoming

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingBatch:
    """A batch the NATS link fetched, to check and store (then settle each message)."""

    items: tuple[Incoming, ...]


class FederationInboxActor(SupervisedActor):
    """Checks messages from other hives against this hive's policy and stores them."""

    child_id = "fed_inbox"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        assert ctx.config.federation is not None
        self.fed = ctx.config.federation

    def receive(self, message: Any) -> Any:
        match message:
            case IncomingBatch(items=items):
                self._receive(items)
            case _:
                log.warning("fed_inbox: unexpected message %r", message)
        return None

    def _receive(self, items: tuple[Incoming, ...]) -> None:
        link = self.ctx.federation
        checked: list[tuple[Incoming, Inbound]] = []
        unreadable = []
        for item in items:
            inbound = self._check(item)
            if inbound is None:
                unreadable.append((item, True))  # redelivering it helps nobody
            else:
                checked.append((item, inbound))
        if unreadable:
            link.settle(unreadable)
        if not checked:
            return
        ids = self.ctx.message_ids
        commits = self.ctx.commits

        def op(q: Queries) -> int:
            store_inbound(q, [inbound for _, inbound in checked], ids)
            return commits.open

        def done(commit: Any, error: BaseException | None) -> None:
            self._committed(checked, error, commit or 0)

        if not self.ctx.refs.tell("store", Write(op, done)):
            link.settle([(item, False) for item, _ in checked])

    def _check(self, item: Incoming) -> Inbound | None:
        parts = item.subject.split(".")
        try:
            origin = validate_hive_name(parts[3] if len(parts) == 4 else "")
            msg = decode(item.data)
        except (WireError, ValueError) as exc:
            log.error("fed_inbox: dropped a message on %s: %s", item.subject, exc)
            return None
        return Inbound(origin, msg, self._refusal(origin, msg))

    def _refusal(self, origin: str, msg: dict[str, Any]) -> tuple[str, str] | None:
        """Why this hive's policy refuses ``msg`` (None: it does not). A refusal coming
        back from another hive's system passes no policy: the Store keeps it only if it
        refuses a message sent from here (hive.federation.store.own_refusal). Every
        other notice of that system (a crash notice for a manager here) is mail from
        ``system@<hive>``, as the accept policy sees it."""
        if claims_refusal(msg):
            return None
        problem = sender_problem(msg["from"], msg["kind"])
        if problem is not None:
            return ("invalid_sender", problem)
        try:
            validate_agent_name(msg["to"])
        except WireError as exc:
            return (exc.code, exc.message)
        size = len(msg["body"].encode("utf-8", "surrogatepass"))
        if size > self.ctx.config.max_body_bytes:
            return ("body_too_large", f"{size} bytes is over this hive's max_body_bytes")
        sender = f"{msg['from']}@{origin}"
        if not self.fed.accepts(msg["to"], sender):
            return (
                "not_accepted",
                f"hive '{self.fed.name}' does not accept messages from '{sender}' to "
                f"'{msg['to']}' (its [federation.accept])",
            )
        return None

    def _committed(
        self, checked: list[tuple[Incoming, Inbound]], error: BaseException | None, commit: int
    ) -> None:
        link = self.ctx.federation
        if error is not None:
            log.error("fed_inbox: storing %d messages failed: %s", len(checked), error)
            link.settle([(item, False) for item, _ in checked])
            return
        from hive.actors.agent import Arrived  # the agent module imports the bus

        refusals = tuple(i.row for _, i in checked if i.row is not None)
        if refusals:
            self.ctx.refs.tell("forwarder", Queued(refusals))
        by_recipient: dict[str, list[Envelope]] = {}
        for _, inbound in checked:
            if inbound.outcome == "stored" and inbound.env is not None:
                by_recipient.setdefault(inbound.env.to, []).append(inbound.env)
        for to, envs in by_recipient.items():
            self.ctx.refs.tell(self.ctx.agent_ref_name(to), Arrived(tuple(envs), commit))
        early = [i for _, i in checked if i.outcome == "gap"]
        if early:
            log.info(
                "fed_inbox: %d message(s) from %s came before an earlier one of their link "
                "(first: epoch %d seq %d); they come again",
                len(early), early[0].origin, early[0].msg["epoch"], early[0].msg["seq"],
            )  # fmt: skip
        link.settle([(item, inbound.outcome != "gap") for item, inbound in checked])


def sender_problem(sender: str, kind: str) -> str | None:
    """What is wrong with a remote message's sender and kind (None: nothing). The sender
    is written into the recipient's prompt (``[message #7 from bob@beta]``), so it must
    be an agent's name, ``operator`` or ``system``; and only ``system`` sends events."""
    if sender not in (OPERATOR, SYSTEM):
        try:
            validate_agent_name(sender)
        except WireError as exc:
            return f"the sender: {exc.message}"[:300]
    if kind not in ("message", "event"):
        return f"kind {kind[:40]!r} is not 'message' or 'event'"
    if kind == "event" and sender != SYSTEM:
        return f"only 'system' sends events, not {sender!r}"
    return None
