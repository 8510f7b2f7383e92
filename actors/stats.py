"""The Stats actor: per-agent turn telemetry into the ``stats`` table, for the charts.

It listens to the StateHub (it never asks an agent) for three kinds only: turn ends,
agent rows and approvals, so hubs with no dashboard open are not asked to publish every
message and tool call. At each turn's end it writes one row per measure: duration, exit
class, inbox depth, notes file size — and, computed inside the same store transaction from
the turn's recorded events and messages, tool calls, per-tool usage and messages sent and
received by class. Queue changes (an agent's inbox depth, the approval queue length) are
written as they happen, at most once a second per series. Rows older than ``retention``
seconds, or beyond ``max_rows``, are deleted.

Keys (``GET /api/stats?keys=...``):

    turn.duration  turn.tool_calls  turn.exit.<class>  turn.sent.<class>
    turn.received.<class>  tool.<name>  inbox_depth  notes_bytes  approval_queue (agent "")

where a message class is peer / operator / manager / system.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hive.actors.base import HiveContext, tell_quietly
from hive.actors.hub import FeedTick, HubFedActor, HubFeed, HubUpdate
from hive.actors.store import Write
from hive.store import Queries
from hive.wire import MANAGER, OPERATOR, SYSTEM

log = logging.getLogger(__name__)

RETENTION_SECONDS = 14 * 86400.0
USAGE_RETENTION_SECONDS = 90 * 86400.0
MAX_ROWS = 2_000_000
QUEUE_MIN_INTERVAL = 1.0
CLASSES = ("peer", "operator", "manager", "system")
WATCHED = frozenset({"turn_ended", "agent", "approval"})


def message_class(name: str) -> str:
    if name == OPERATOR:
        return "operator"
    if name == MANAGER:
        return "manager"
    if name == SYSTEM:
        return "system"
    return "peer"


def prune(q: Queries, now: float, retention: float, max_rows: int) -> int:
    """Delete rows older than ``retention`` and the oldest beyond ``max_rows``."""
    conn = q.conn
    conn.execute("DELETE FROM stats WHERE ts < ?", (now - retention,))
    deleted = conn.changes()
    # What turns cost (hive.spend) is kept longer than the series: it is small.
    conn.execute("DELETE FROM turn_usage WHERE ts < ?", (now - USAGE_RETENTION_SECONDS,))
    total = int(str(conn.execute("SELECT COUNT(*) FROM stats").fetchall()[0][0]))
    if total > max_rows:
        conn.execute(
            "DELETE FROM stats WHERE rowid IN (SELECT rowid FROM stats ORDER BY ts LIMIT ?)",
            (total - max_rows,),
        )
        deleted += conn.changes()
    return deleted


def turn_rows(
    q: Queries, agent: str, ts: float, turn_id: int, message_ids: list[int]
) -> list[tuple[str, float, str, float]]:
    """What the turn did, from what the store recorded of it: tool calls by tool, messages
    it sent by recipient class (its ``send`` calls) and received by sender class."""
    tools: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    calls = 0
    for event in q.turn_events(turn_id):
        if event["kind"] != "tool_call":
            continue
        data = event["data"] if isinstance(event["data"], dict) else {}
        name = str(data.get("name", "?")).removeprefix("mcp__hive__")
        calls += 1
        tools[name] += 1
        arguments = data.get("input")
        if name == "send" and isinstance(arguments, dict):
            sent[message_class(str(arguments.get("to", "")))] += 1
    if message_ids:
        marks = ", ".join("?" * len(message_ids))
        for (sender,) in q.conn.execute(
            f"SELECT sender FROM messages WHERE id IN ({marks})", message_ids
        ):
            received[message_class(str(sender))] += 1
    rows = [(agent, ts, "turn.tool_calls", float(calls))]
    for cls in CLASSES:
        rows.append((agent, ts, f"turn.sent.{cls}", float(sent[cls])))
        rows.append((agent, ts, f"turn.received.{cls}", float(received[cls])))
    rows.extend((agent, ts, f"tool.{tool}", float(n)) for tool, n in tools.items())
    return rows


@dataclass(frozen=True)
class _FlushQueues:
    pass


class StatsActor(HubFedActor):
    """Turn telemetry and queue depths into the ``stats`` table, for the charts."""

    child_id = "stats"

    def __init__(
        self,
        ctx: HiveContext,
        retention: float = RETENTION_SECONDS,
        max_rows: int = MAX_ROWS,
    ) -> None:
        super().__init__(ctx, HubFeed(ctx, WATCHED))
        self.retention = retention
        self.max_rows = max_rows
        self.depth_written: dict[str, tuple[int, float]] = {}
        self.depth_pending: dict[str, int] = {}
        self.approvals: dict[str, bool] = {}
        self.approval_queue_written: int | None = None
        self.flush_queued = False
        self.rows_written = 0

    # --- messages -----------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        match message:
            case HubUpdate(update=update):
                self._update(update)
            case FeedTick():
                self.tick()
            case _FlushQueues():
                self.flush_queued = False
                self._flush_queues()
            case _:
                log.warning("stats: unexpected message %r", message)
        return None

    def prune(self, now: float) -> None:
        retention, max_rows = self.retention, self.max_rows
        self._write(lambda q: prune(q, now, retention, max_rows))

    def _update(self, u: dict[str, Any]) -> None:
        kind, data = u.get("kind"), u.get("data")
        if not isinstance(data, dict):
            if kind == "approval":
                self.approvals.pop(str(u.get("key")), None)
                self._approval_queue_changed()
            return
        if kind == "turn_ended":
            self._turn_ended(data)
        elif kind == "agent":
            depth = data.get("inbox_depth")
            if isinstance(depth, int):
                self._queue_changed(str(data.get("name")), depth)
        elif kind == "approval":
            self.approvals[str(u.get("key"))] = data.get("status", "pending") == "pending"
            self._approval_queue_changed()

    def _turn_ended(self, data: dict[str, Any]) -> None:
        agent = str(data.get("agent"))
        last = data.get("last_turn") or {}
        now = time.time()
        ts = float(last.get("ended_at") or now)
        rows: list[tuple[str, float, str, float]] = []
        if isinstance(last.get("duration"), int | float):
            rows.append((agent, ts, "turn.duration", float(last["duration"])))
        rows.append((agent, ts, f"turn.exit.{last.get('exit_class') or 'unknown'}", 1.0))
        notes = self.ctx.config.agent_dir(agent) / "state" / "notes.md"
        try:
            rows.append((agent, ts, "notes_bytes", float(notes.lstat().st_size)))
        except OSError:
            rows.append((agent, ts, "notes_bytes", 0.0))
        depth = self.depth_pending.pop(agent, None)
        if depth is None and agent in self.depth_written:
            depth = self.depth_written[agent][0]
        if depth is not None:
            rows.append((agent, ts, "inbox_depth", float(depth)))
            self.depth_written[agent] = (depth, now)
        turn_id = int(data.get("turn_id") or 0)
        message_ids = [int(i) for i in data.get("message_ids") or []]

        # Queued behind the agent's own writes of this turn's events (the agent told the
        # store before it told the hub that told us), so they are all there to read.
        def write(q: Queries) -> None:
            q.insert_stats(rows + turn_rows(q, agent, ts, turn_id, message_ids))

        self.rows_written += len(rows)
        self._write(write)

    def _queue_changed(self, agent: str, depth: int) -> None:
        now = time.time()
        last = self.depth_written.get(agent)
        if last is not None and last[0] == depth:
            self.depth_pending.pop(agent, None)
            return
        if last is None or now - last[1] >= QUEUE_MIN_INTERVAL:
            self.depth_written[agent] = (depth, now)
            self.depth_pending.pop(agent, None)
            self._insert([(agent, now, "inbox_depth", float(depth))])
        else:
            self.depth_pending[agent] = depth
            if not self.flush_queued:
                self.flush_queued = True
                me = self.actor_ref
                self.ctx.io.call_later(QUEUE_MIN_INTERVAL, lambda: tell_quietly(me, _FlushQueues()))

    def _flush_queues(self) -> None:
        now = time.time()
        rows = []
        for agent, depth in self.depth_pending.items():
            rows.append((agent, now, "inbox_depth", float(depth)))
            self.depth_written[agent] = (depth, now)
        self.depth_pending.clear()
        self._insert(rows)

    def _approval_queue_changed(self) -> None:
        n = sum(1 for pending in self.approvals.values() if pending)
        if n != self.approval_queue_written:
            self.approval_queue_written = n
            self._insert([("", time.time(), "approval_queue", float(n))])

    # --- writing ------------------------------------------------------------------------

    def _insert(self, rows: list[tuple[str, float, str, float]]) -> None:
        if rows:
            self.rows_written += len(rows)
            self._write(lambda q: q.insert_stats(rows))

    def _write(self, op: Any) -> None:
        if not self.ctx.refs.tell("store", Write(op)):
            log.debug("stats: store restarting, %s dropped", op)
