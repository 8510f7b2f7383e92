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
    """One message waiting for its PubAck: ``seq`` orders it on its link to ``dest``."""

    id: int
    dest: str
    seq: int
    payload: bytes


def encode(env: Envelope, seq: int) -> bytes:
    """What travels in the NATS message. The origin hive is not in it: the receiver reads
    it from the subject, which NATS permissions tie to the publishing hive."""
    agent, _ = split(env.to)
    return packb(
        {
            "id": env.id,
            "seq": seq,
            "from": env.sender,
            "to": agent,
            "kind": env.kind,
            "body": env.body,
            "ts": env.ts,
            "meta": env.meta,
        }
    )


def decode(data: bytes) -> dict[str, Any]:
    """The payload as a dict with every field of the right type, or ValueError."""
    try:
        raw = unpackb(data)
    except Exception as exc:
        raise ValueError(f"not a msgpack map: {exc}") from None
    types = {"id": int, "seq": int, "from": str, "to": str, "kind": str, "body": str}
    if not isinstance(raw, dict):
        raise ValueError("not a msgpack map")
    for key, typ in types.items():
        if not isinstance(raw.get(key), typ):
            raise ValueError(f"field {key!r} is missing or not a {typ.__name__}")
    if not isinstance(raw.get("meta", {}), dict):
        raise ValueError("field 'meta' is not a map")
    return raw


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
    seqs: dict[str, int] = {}
    rows = []
    for env in envs:
        _, dest = split(env.to)
        assert dest is not None
        if dest not in seqs:
            seqs[dest] = _link_seq(q, "fed_links_out", "dest", dest)
        seqs[dest] += 1
        rows.append(OutboxRow(env.id, dest, seqs[dest], encode(env, seqs[dest])))
    q.conn.executemany(
        "INSERT INTO fed_outbox (id, dest, seq, payload) VALUES (?, ?, ?, ?)",
        [(r.id, r.dest, r.seq, r.payload) for r in rows],
    )
    q.conn.executemany(
        "INSERT INTO fed_links_out (dest, seq) VALUES (?, ?) "
        "ON CONFLICT (dest) DO UPDATE SET seq = excluded.seq",
        list(seqs.items()),
    )
    return rows


def _link_seq(q: Queries, table: str, key: str, value: str) -> int:
    rows = q.conn.execute(f"SELECT seq FROM {table} WHERE {key} = ?", (value,)).fetchall()
    return int(str(rows[0][0])) if rows else 0


def forwarded(q: Queries, ids: Iterable[int]) -> None:
    """PubAcked: JetStream has them; the outbox lets them go."""
    q.conn.executemany("DELETE FROM fed_outbox WHERE id = ?", [(i,) for i in ids])


def load_outbox(q: Queries, after: dict[str, int] | None = None) -> list[OutboxRow]:
    """Every waiting row in link order (or only those past ``after[dest]``)."""
    rows = [
        OutboxRow(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]))
        for r in q.conn.execute("SELECT id, dest, seq, payload FROM fed_outbox ORDER BY dest, seq")
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


def store_inbound(q: Queries, items: Sequence[Inbound], ids: IdAllocator) -> None:
    """Commit each item exactly once, in its link's order: a number at or below the link's
    last is a repeat (a redelivery, a second publish), one past it is next, any other is
    early (an earlier one was lost on the way and comes again: not stored now)."""
    last: dict[str, int] = {}
    for item in items:
        if item.origin not in last:
            last[item.origin] = _link_seq(q, "fed_links_in", "origin", item.origin)
        seq = item.msg["seq"]
        if seq <= last[item.origin]:
            item.outcome = "duplicate"
            continue
        if seq != last[item.origin] + 1:
            item.outcome = "gap"
            continue
        last[item.origin] = seq
        _store_one(q, item, ids)
    q.conn.executemany(
        "INSERT INTO fed_links_in (origin, seq) VALUES (?, ?) "
        "ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq",
        list(last.items()),
    )


def _store_one(q: Queries, item: Inbound, ids: IdAllocator) -> None:
    m = item.msg
    sender = f"{m['from']}@{item.origin}"
    refusal = item.refusal
    if refusal is None and not _agent_exists(q, m["to"]):
        refusal = ("unknown_agent", f"no agent named '{m['to']}'")
    is_notice = m["from"] == SYSTEM and m["kind"] == "event"
    if refusal is None:
        env = Envelope(ids.next(), sender, m["to"], m["body"], m["kind"], meta=dict(m["meta"]))
        q.conn.execute(
            "INSERT INTO messages (id, sender, recipient, kind, body, ts, meta, origin, "
            "origin_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (env.id, sender, env.to, env.kind, env.body, env.ts,
             packb(env.meta) if env.meta else None, item.origin, m["id"]),
        )  # fmt: skip
        if is_notice and "refused" in env.meta:
            q.insert_event(env.to, "federation_refused", env.meta["refused"])
        item.outcome, item.env = "stored", env
    elif is_notice:
        # A notice is never answered with a refusal (two hives would bounce it forever).
        q.insert_event("", "federation_dropped", {"from": sender, "why": refusal[1]})
        item.outcome = "dropped"
    else:
        item.env = refusal_notice(ids.next(), sender, m, item.origin, refusal)
        [item.row] = queue_outbound(q, [item.env])
        q.insert_event(m["to"], "federation_refused", {"from": sender, "code": refusal[0]})
        item.outcome = "refused"


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
