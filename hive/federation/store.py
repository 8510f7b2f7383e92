"""The federation's rows in the store (migration v4): the outbox, each link's sequence,
and inbound messages keyed by (origin, origin id).

Every function here runs inside a Store transaction (``Write``), on the Store's thread,
except ``load_outbox``, which reads. See docs/federation.md, "Delivery".
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hive.federation.address import split
from hive.store import IdAllocator, Queries
from hive.wire import SYSTEM, Envelope, packb, unpackb

# Who a message bound for another hive is marked delivered by, in the sender's store: it
# is the outbox's from then on (the sender's transcript keeps the message).
OUTBOX = "outbox"


@dataclass(frozen=True)
class OutboxRow:
    """One message waiting for its PubAck: ``seq`` orders it on its link to ``dest``;
    ``epoch`` is the start of this hive that queued it (0: before epochs existed)."""

    id: int
    dest: str
    seq: int
    payload: bytes
    epoch: int = 0

    def msg_id(self, origin: str) -> str:
        """Its ``Nats-Msg-Id``, the same for every publish of this row. With an epoch it
        is not the message id: a hive restored from a backup gives those out again, and
        JetStream would drop the new message as a second publish of the old one."""
        return f"{origin}:{self.id}" if self.epoch == 0 else f"{origin}:{self.epoch}.{self.seq}"


@dataclass
class LinkOut:
    """The sending end of one link in this transaction: its last number, and the epoch
    and first number of the run of numbers this start of the hive gives out on it."""

    seq: int
    epoch: int
    first: int


def encode(env: Envelope, link: LinkOut) -> bytes:
    """What travels in the NATS message. The origin hive is not in it: the receiver reads
    it from the subject, which NATS permissions tie to the publishing hive."""
    agent, _ = split(env.to)
    return packb(
        {
            "id": env.id,
            "seq": link.seq,
            "epoch": link.epoch,
            "first": link.first,
            "from": env.sender,
            "to": agent,
            "kind": env.kind,
            "body": env.body,
            "ts": env.ts,
            "meta": env.meta,
        }
    )


# The numbers a payload carries are stored in SQLite's signed 64-bit integers: a larger
# one would fail its whole batch's transaction, and the batch would come again for good.
NUMBER_LIMIT = 2**63


def decode(data: bytes) -> dict[str, Any]:
    """The payload as a dict with every field of the right type, or ValueError."""
    try:
        raw = unpackb(data)
    except Exception as exc:
        raise ValueError(f"not a msgpack map: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("not a msgpack map")
    # A hive older than link epochs sends neither: its messages are all of epoch 0.
    raw.setdefault("epoch", 0)
    raw.setdefault("first", 1)
    for key in ("id", "seq", "epoch", "first"):
        if type(raw.get(key)) is not int or not 0 <= raw[key] < NUMBER_LIMIT:
            raise ValueError(f"field {key!r} is missing or not a number from 0 to 2**63-1")
    for key in ("from", "to", "kind", "body"):
        if not isinstance(raw.get(key), str):
            raise ValueError(f"field {key!r} is missing or not a str")
    if not isinstance(raw.get("meta", {}), dict):
        raise ValueError("field 'meta' is not a map")
    return raw


def begin_epoch(q: Queries) -> int:
    """Called once at each start, before anything is sent: a new epoch, later than every
    earlier one this store has seen (the clock in ns; one more than the last if the
    clock went back). A store restored from a backup starts one its peers never saw."""
    q.conn.execute(
        "INSERT INTO fed_epoch (id, epoch) VALUES (1, ?) ON CONFLICT (id) "
        "DO UPDATE SET epoch = max(excluded.epoch, fed_epoch.epoch + 1)",
        (time.time_ns(),),
    )
    return _current_epoch(q)


def _current_epoch(q: Queries) -> int:
    rows = q.conn.execute("SELECT epoch FROM fed_epoch WHERE id = 1").fetchall()
    return int(str(rows[0][0])) if rows else 0


def queue_outbound(q: Queries, envs: Sequence[Envelope]) -> list[OutboxRow]:
    """Store messages for other hives: in the messages table as the sender's own record
    (delivered to the outbox), and each in the outbox with the next number of its link.
    Runs in the transaction that acknowledges the sender."""
    now = time.time()
    q.conn.executemany(
        "INSERT INTO messages (id, sender, recipient, kind, body, ts, meta, state, "
        "delivered_at, delivered_by) VALUES (?, ?, ?, ?, ?, ?, ?, 'delivered', ?, ?)",
        [(e.id, e.sender, e.to, e.kind, e.body, e.ts, packb(e.meta) if e.meta else None,
          now, OUTBOX) for e in envs],
    )  # fmt: skip
    epoch = _current_epoch(q)
    links: dict[str, LinkOut] = {}
    rows = []
    for env in envs:
        _, dest = split(env.to)
        assert dest is not None
        if dest not in links:
            links[dest] = _link_out(q, dest, epoch)
        link = links[dest]
        link.seq += 1
        rows.append(OutboxRow(env.id, dest, link.seq, encode(env, link), epoch))
    q.conn.executemany(
        "INSERT INTO fed_outbox (id, dest, seq, payload, epoch) VALUES (?, ?, ?, ?, ?)",
        [(r.id, r.dest, r.seq, r.payload, r.epoch) for r in rows],
    )
    q.conn.executemany(
        "INSERT INTO fed_links_out (dest, seq, epoch, epoch_first) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (dest) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch, "
        "epoch_first = excluded.epoch_first",
        [(dest, link.seq, link.epoch, link.first) for dest, link in links.items()],
    )
    return rows


def _link_out(q: Queries, dest: str, epoch: int) -> LinkOut:
    """The link to ``dest`` as this start of the hive numbers it: the first message it
    sends there after a start begins the epoch's run, right after the last number."""
    rows = q.conn.execute(
        "SELECT seq, epoch, epoch_first FROM fed_links_out WHERE dest = ?", (dest,)
    ).fetchall()
    if not rows:
        return LinkOut(0, epoch, 1)
    seq, stored_epoch, first = (int(str(v)) for v in rows[0])
    return LinkOut(seq, epoch, first if stored_epoch == epoch else seq + 1)


def forwarded(q: Queries, ids: Iterable[int]) -> None:
    """PubAcked: JetStream has them; the outbox lets them go."""
    q.conn.executemany("DELETE FROM fed_outbox WHERE id = ?", [(i,) for i in ids])


def load_outbox(q: Queries, after: dict[str, int] | None = None) -> list[OutboxRow]:
    """Every waiting row in link order (or only those past ``after[dest]``)."""
    rows = [
        OutboxRow(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]), int(r[4]))
        for r in q.conn.execute(
            "SELECT id, dest, seq, payload, epoch FROM fed_outbox ORDER BY dest, seq"
        )
    ]
    if after:
        rows = [r for r in rows if r.seq > after.get(r.dest, 0)]
    return rows


def outbox_depths(q: Queries) -> dict[str, int]:
    return {
        str(r[0]): int(r[1])
        for r in q.conn.execute("SELECT dest, COUNT(*) FROM fed_outbox GROUP BY dest")
    }


@dataclass
class Inbound:
    """A message from another hive, checked by the receiving actor (``refusal`` set if its
    policy refuses it), to be stored in the receiver's transaction."""

    origin: str
    msg: dict[str, Any]
    refusal: tuple[str, str] | None = None
    outcome: str = ""  # stored | duplicate | gap | refused | dropped
    env: Envelope | None = None  # stored: the local message; refused: the refusal sent back
    row: OutboxRow | None = None  # refused: its outbox row


@dataclass
class LinkIn:
    """The receiving end of one link: the sender's epoch now, and the last number stored."""

    epoch: int
    seq: int

    def place(self, msg: dict[str, Any]) -> str:
        """Where a message falls on this link: ``next`` (store it; the link moves on),
        ``duplicate`` (stored already) or ``gap`` (early: an earlier one must come first).

        Within an epoch the numbers run on by one. A later epoch (the sender started
        again) begins right after the number its first message names: the link moves to
        it once everything before that is stored. After a restore from a backup that
        number is one this end has passed already, and the link is rebased onto it
        rather than taking the new messages for repeats."""
        epoch, first, seq = msg["epoch"], msg["first"], msg["seq"]
        if epoch < self.epoch:
            return "duplicate"  # this end moved past that epoch with all of it stored
        if epoch > self.epoch:
            if self.seq < first - 1:
                return "gap"
            self.epoch, self.seq = epoch, first - 1
        if seq <= self.seq:
            return "duplicate"
        if seq != self.seq + 1:
            return "gap"
        self.seq = seq
        return "next"


def store_inbound(q: Queries, items: Sequence[Inbound], ids: IdAllocator) -> None:
    """Commit each item exactly once, in its link's order (``LinkIn.place``)."""
    links: dict[str, LinkIn] = {}
    for item in items:
        if item.origin not in links:
            links[item.origin] = _link_in(q, item.origin)
        outcome = links[item.origin].place(item.msg)
        if outcome == "next":
            _store_one(q, item, ids)
        else:
            item.outcome = outcome
    q.conn.executemany(
        "INSERT INTO fed_links_in (origin, seq, epoch) VALUES (?, ?, ?) "
        "ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch",
        [(origin, link.seq, link.epoch) for origin, link in links.items()],
    )


def _link_in(q: Queries, origin: str) -> LinkIn:
    rows = q.conn.execute(
        "SELECT epoch, seq FROM fed_links_in WHERE origin = ?", (origin,)
    ).fetchall()
    return LinkIn(*(int(str(v)) for v in rows[0])) if rows else LinkIn(0, 0)


def _store_one(q: Queries, item: Inbound, ids: IdAllocator) -> None:
    m = item.msg
    sender = f"{m['from']}@{item.origin}"
    refusal = item.refusal
    if refusal is None and not _agent_exists(q, m["to"]):
        refusal = ("unknown_agent", f"no agent named '{m['to']}'")
    is_notice = m["from"] == SYSTEM and m["kind"] == "event"
    if refusal is None and claims_refusal(m):
        # No policy stood between a refusal and this hive's agents, so it must be what
        # it claims: a refusal of a message sent there from here.
        m, refusal = own_refusal(q, m, item.origin)
    if refusal is None:
        env = Envelope(ids.next(), sender, m["to"], m["body"], m["kind"], meta=dict(m["meta"]))
        q.conn.execute(
            "INSERT INTO messages (id, sender, recipient, kind, body, ts, meta, origin, "
            "origin_id, origin_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (env.id, sender, env.to, env.kind, env.body, env.ts,
             packb(env.meta) if env.meta else None, item.origin, m["id"], m["epoch"]),
        )  # fmt: skip
        if is_notice and "refused" in env.meta:
            q.insert_event(env.to, "federation_refused", env.meta["refused"])
        item.outcome, item.env = "stored", env
    elif is_notice or refusal[0] == "invalid_sender":
        # A notice is never answered with a refusal (two hives would bounce it forever),
        # nor is a sender with no name to answer to.
        q.insert_event("", "federation_dropped", {"from": sender[:100], "why": refusal[1]})
        item.outcome = "dropped"
    else:
        item.env = refusal_notice(ids.next(), sender, m, item.origin, refusal)
        [item.row] = queue_outbound(q, [item.env])
        q.insert_event(m["to"], "federation_refused", {"from": sender, "code": refusal[0]})
        item.outcome = "refused"


def claims_refusal(m: dict[str, Any]) -> bool:
    """Whether a message from another hive says it is a refusal coming back: the one kind
    of mail no accept policy stands in front of (``own_refusal`` checks it instead)."""
    return m["from"] == SYSTEM and m["kind"] == "event" and "refused" in m.get("meta", {})


# What of a refusal's reason is kept from another hive: enough to read, not a flood.
REFUSAL_TEXT_MAX = 500


def own_refusal(
    q: Queries, m: dict[str, Any], origin: str
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """A refusal from ``origin`` is kept only if it refuses a message that the agent it
    is addressed to really sent to ``origin``; its text is then written here from the
    refusal's fields (cut to ``REFUSAL_TEXT_MAX``), not taken as sent. Anything else is
    refused (a notice refused is dropped, never answered)."""
    refused = m.get("meta", {}).get("refused")
    fields = {"id": int, "to": str, "code": str, "message": str}
    if not isinstance(refused, dict) or not all(
        type(refused.get(k)) is t for k, t in fields.items()
    ):
        return m, ("not_a_refusal", "a notice from another hive that is not a refusal")
    sent = q.conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND sender = ? AND recipient = ?",
        (refused["id"] if 0 <= refused["id"] < NUMBER_LIMIT else -1, m["to"],
         f"{refused['to']}@{origin}"),
    ).fetchall()  # fmt: skip
    if not sent:
        return m, ("not_a_refusal", f"refuses no message '{m['to']}' sent to hive '{origin}'")
    kept = {k: refused[k] for k in fields}
    for k in ("to", "code", "message"):
        kept[k] = kept[k][:REFUSAL_TEXT_MAX]
    text = refusal_notice(0, SYSTEM, kept, origin, (kept["code"], kept["message"])).body
    return {**m, "body": text, "meta": {"refused": kept}}, None


def refusal_notice(
    msg_id: int, sender: str, m: dict[str, Any], origin: str, refusal: tuple[str, str]
) -> Envelope:
    """The event that tells a remote sender its message was refused, and why."""
    code, why = refusal
    return Envelope(
        msg_id,
        SYSTEM,
        sender,
        f"your message {m['id']} to '{m['to']}' was refused: {why} ({code})",
        "event",
        meta={"refused": {"code": code, "message": why, "id": m["id"], "to": m["to"]}},
    )


def _agent_exists(q: Queries, name: str) -> bool:
    rows = q.conn.execute(
        "SELECT 1 FROM agents WHERE name = ? AND destroyed = 0", (name,)
    ).fetchall()
    return bool(rows)
