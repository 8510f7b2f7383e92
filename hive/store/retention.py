"""What the store keeps, and for how long: the operator's mailbox cap and retention.

Messages to ``operator`` are stored (and marked delivered) at once: nothing reads them off a
queue, so without a cap an agent within its rate limit could fill the disk. The
``OperatorMailbox`` counts what the store holds for the operator, per sender, and refuses a
send past the caps with ``mailbox_full`` before it is acknowledged: a refused message was
never stored, an accepted one is never dropped to make room. Room comes back when retention
prunes old operator mail, or when the operator clears it (``hivectl clear-mail``). A send
counted and then not stored (the store failed, the Bus restarted before its commit) keeps
its room until the daemon restarts and counts the store again: the caps err towards
refusing, never towards holding more.

Every table that grows has a retention rule, applied by the Store actor in small batches
(``prune_batch``) so that one pass never holds the writer for long. A pending message is
never pruned, whatever its age; nor is a pending approval, an unfinished turn, or an
agent's newest turn (its last-turn chip after a restart).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hive.wire import OPERATOR, SYSTEM, WireError

if TYPE_CHECKING:
    from hive.config import HiveConfig
    from hive.store.database import Queries

DAY = 86400.0


@dataclass
class MailCount:
    """Operator mail held by the store: per sender, messages and body bytes."""

    messages: Counter[str] = field(default_factory=Counter)
    size: Counter[str] = field(default_factory=Counter)

    def total(self) -> tuple[int, int]:
        return sum(self.messages.values()), sum(self.size.values())


class OperatorMailbox:
    """The operator's mailbox caps. Shared by the Bus (admits) and the Store (prunes), on
    different threads, hence the lock; every call is a few dict operations."""

    def __init__(self, cap: int, cap_bytes: int, per_sender: int, held: MailCount) -> None:
        self.cap, self.cap_bytes, self.per_sender = cap, cap_bytes, per_sender
        self.held = held
        self._lock = threading.Lock()

    def admit(self, sender: str, size: int) -> None:
        """Count a message to the operator, or raise ``mailbox_full`` (nothing counted).
        hive's own notices (crashes, failures) always pass: they are what the operator
        must not miss, and the crash watch already bounds how many there are."""
        with self._lock:
            if sender != SYSTEM:
                self._check(sender, size)
            self.held.messages[sender] += 1
            self.held.size[sender] += size

    def _check(self, sender: str, size: int) -> None:
        mine = self.held.messages[sender]
        if self.per_sender and mine >= self.per_sender:
            raise WireError(
                "mailbox_full",
                f"the operator's mailbox already holds {mine} messages from '{sender}', "
                f"its limit of operator_mail_per_sender = {self.per_sender}; nothing was "
                "sent. Room comes back as old mail expires or the operator clears it "
                "(hivectl clear-mail)",
            )
        count, size_held = self.held.total()
        if (self.cap and count >= self.cap) or (
            self.cap_bytes and size_held + size > self.cap_bytes
        ):
            raise WireError(
                "mailbox_full",
                f"the operator's mailbox is full ({count} messages, {size_held} bytes; "
                f"operator_mailbox_cap = {self.cap}, operator_mailbox_bytes = "
                f"{self.cap_bytes}); nothing was sent. Room comes back as old mail expires "
                "or the operator clears it (hivectl clear-mail)",
            )

    def removed(self, gone: MailCount) -> None:
        """Operator mail the store deleted (retention, clear-mail) frees its room."""
        with self._lock:
            self.held.messages.subtract(gone.messages)
            self.held.size.subtract(gone.size)
            self.held.messages = +self.held.messages  # drop zero and negative counts
            self.held.size = +self.held.size


def operator_mail(q: Queries, where: str = "", params: tuple[object, ...] = ()) -> MailCount:
    """Count the operator's mail in the store (optionally only rows matching ``where``)."""
    count = MailCount()
    sql = (
        "SELECT sender, COUNT(*), COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM messages "
        f"WHERE recipient = ? {('AND ' + where) if where else ''} GROUP BY sender"
    )
    for sender, n, size in q.conn.execute(sql, (OPERATOR, *params)):
        count.messages[str(sender)] = int(str(n))
        count.size[str(sender)] = int(str(size))
    return count


def clear_operator_mail(q: Queries, sender: str | None, before_id: int | None) -> MailCount:
    """The operator's clear-mail: delete their mail (from one sender, older than an id)."""
    where, params = _mail_filter(sender, before_id)
    gone = operator_mail(q, where, params)
    sql = f"DELETE FROM messages WHERE recipient = ? {('AND ' + where) if where else ''}"
    q.conn.execute(sql, (OPERATOR, *params))
    return gone


def _mail_filter(sender: str | None, before_id: int | None) -> tuple[str, tuple[object, ...]]:
    parts: list[str] = []
    params: list[object] = []
    if sender is not None:
        parts.append("sender = ?")
        params.append(sender)
    if before_id is not None:
        parts.append("id < ?")
        params.append(before_id)
    return " AND ".join(parts), tuple(params)


# --- retention --------------------------------------------------------------------------


@dataclass
class Pruned:
    """What one pass deleted. ``more``: some table had more than a batch to delete, so the
    next pass should come soon."""

    rows: Counter[str] = field(default_factory=Counter)
    operator_mail: MailCount = field(default_factory=MailCount)
    more: bool = False


def _cutoff(now: float, days: float) -> float | None:
    return now - days * DAY if days > 0 else None


def prune(q: Queries, cfg: HiveConfig, now: float) -> Pruned:
    """One retention pass: at most ``cfg.prune_batch`` rows per rule."""
    out = Pruned()
    for table, select, cutoff in _rules(q, cfg, now):
        if cutoff is not None:
            _prune_rule(q, out, table, select, cutoff, cfg.prune_batch)
    return out


def _rules(q: Queries, cfg: HiveConfig, now: float) -> list[tuple[str, str, float | None]]:
    """Each rule: (table, the rowids to delete given a cutoff, the cutoff; None = keep all)."""
    rules: list[tuple[str, str, float | None]] = [
        (
            "messages",
            "SELECT id FROM messages WHERE state = 'delivered' AND delivered_at < ? "
            "ORDER BY delivered_at LIMIT ?",
            _cutoff(now, cfg.message_retention_days),
        ),
        (
            "turn_events",
            "SELECT e.rowid FROM turn_events e JOIN turns t ON t.id = e.turn_id "
            "WHERE t.ended_at < ? LIMIT ?",
            _cutoff(now, cfg.turn_event_retention_days),
        ),
        (
            "turns",
            "SELECT id FROM turns WHERE ended_at < ? AND id NOT IN "
            "(SELECT MAX(id) FROM turns GROUP BY agent) "
            "AND NOT EXISTS (SELECT 1 FROM turn_events e WHERE e.turn_id = turns.id) "
            "ORDER BY ended_at LIMIT ?",
            _cutoff(now, cfg.turn_retention_days),
        ),
        (
            "events",
            "SELECT id FROM events WHERE ts < ? ORDER BY ts LIMIT ?",
            _cutoff(now, cfg.event_retention_days),
        ),
        (
            "approvals",
            "SELECT id FROM approvals WHERE status != 'pending' AND resolved_at < ? "
            "ORDER BY resolved_at LIMIT ?",
            _cutoff(now, cfg.approval_retention_days),
        ),
        (
            "scheduled_prompts",
            "SELECT id FROM scheduled_prompts WHERE state != 'scheduled' AND done_at < ? LIMIT ?",
            _cutoff(now, cfg.approval_retention_days),
        ),
    ]
    if cfg.message_retention_rows > 0:
        newest = q.max_id("messages")
        rules.append(
            (
                "messages",
                "SELECT id FROM messages WHERE state = 'delivered' AND id <= ? ORDER BY id LIMIT ?",
                float(newest - cfg.message_retention_rows),
            )
        )
    return rules


def _prune_rule(
    q: Queries, out: Pruned, table: str, select: str, cutoff: float, batch: int
) -> None:
    """Delete one batch of the rows ``select`` names, counting them (and operator mail) in
    ``out``."""
    ids = [r[0] for r in q.conn.execute(select, (cutoff, batch))]
    if not ids:
        return
    out.more = out.more or len(ids) >= batch
    key = "rowid" if table == "turn_events" else "id"
    marks = ", ".join("?" * len(ids))
    if table == "messages":
        gone = operator_mail(q, f"id IN ({marks})", tuple(ids))
        out.operator_mail.messages.update(gone.messages)
        out.operator_mail.size.update(gone.size)
    q.conn.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", ids)
    out.rows[table] += q.conn.changes()
