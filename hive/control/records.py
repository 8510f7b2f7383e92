"""The control plane's rows: approvals (operator questions among them), drafts and
scheduled prompts. Plain functions over the store's ``Queries``; the Approvals actor runs
the writing ones inside ``Write``s, so each is part of one group-committed transaction.

Resolution is exactly once because ``claim`` is a conditional update: of any number of
resolvers (operator, dashboard, TTL timer, the asking agent), only the first transaction
to run ``UPDATE ... WHERE status = 'pending'`` changes the row; the others see the status it
left and report "already resolved as X".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from hive.store import Queries
from hive.wire import Envelope, packb, unpackb

QUESTION = "question"
APPROVAL_KINDS = ("spawn", "spawn_commit", "apply_commit", "schedule_prompt")
STATUSES = ("pending", "approved", "denied", "failed", "cancelled", "expired", "answered")


@dataclass
class ApprovalRecord:
    """One row of ``approvals``. ``details`` holds what the kind needs (question and
    options, the config to spawn, the diff, the prompt and its time)."""

    id: int
    kind: str
    agent: str
    requested_by: str
    requested_at: float
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    status: str = "pending"
    resolved_at: float | None = None
    resolution: dict[str, Any] = field(default_factory=dict)

    @property
    def is_question(self) -> bool:
        return self.kind == QUESTION

    def to_wire(self, now: float | None = None) -> dict[str, Any]:
        """The row as subscribers, hivectl and the dashboard see it."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "agent": self.agent,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "status": self.status,
            "description": self.description,
            "expires_at": self.expires_at,
            "resolved_at": self.resolved_at,
            "resolution": self.resolution,
            "details": self.details,
        }
        if self.is_question:
            out["question"] = self.details.get("question", "")
            out["options"] = self.details.get("options", [])
        if now is not None and self.expires_at is not None and self.status == "pending":
            out["ttl_remaining"] = max(0.0, self.expires_at - now)
        return out


_COLS = (
    "id, kind, agent, requested_at, status, description, payload, expires_at, resolved_at, "
    "resolution"
)


def _record(r: Any) -> ApprovalRecord:
    payload = unpackb(r[6]) if r[6] else {}
    return ApprovalRecord(
        id=r[0],
        kind=r[1],
        agent=r[2],
        requested_at=r[3],
        status=r[4],
        description=r[5],
        requested_by=str(payload.get("requested_by", "")),
        details=dict(payload.get("details") or {}),
        expires_at=r[7],
        resolved_at=r[8],
        resolution=unpackb(r[9]) if r[9] else {},
    )


def insert_approval(q: Queries, rec: ApprovalRecord) -> None:
    q.conn.execute(
        "INSERT INTO approvals (id, agent, kind, requested_at, status, description, payload, "
        "expires_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
        (
            rec.id,
            rec.agent,
            rec.kind,
            rec.requested_at,
            rec.description,
            packb({"requested_by": rec.requested_by, "details": rec.details}),
            rec.expires_at,
        ),
    )


def get_approval(q: Queries, approval_id: int) -> ApprovalRecord | None:
    rows = q.conn.execute(f"SELECT {_COLS} FROM approvals WHERE id = ?", (approval_id,)).fetchall()
    return _record(rows[0]) if rows else None


def pending_approvals(q: Queries) -> list[ApprovalRecord]:
    rows = q.conn.execute(f"SELECT {_COLS} FROM approvals WHERE status = 'pending' ORDER BY id")
    return [_record(r) for r in rows]


def approvals(
    q: Queries, status: str | None = None, agent: str | None = None, limit: int = 100
) -> list[ApprovalRecord]:
    """History, newest first."""
    sql = f"SELECT {_COLS} FROM approvals WHERE 1 = 1"
    params: list[Any] = []
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if agent is not None:
        sql += " AND agent = ?"
        params.append(agent)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_record(r) for r in q.conn.execute(sql, params)]


def claim(
    q: Queries, approval_id: int, status: str, resolution: dict[str, Any], now: float
) -> bool:
    """Move a pending row to ``status``; False if it was no longer pending."""
    q.conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, resolution = ? "
        "WHERE id = ? AND status = 'pending'",
        (status, now, packb(resolution), approval_id),
    )
    return int(q.conn.changes()) == 1


def mark_failed(q: Queries, approval_id: int, resolution: dict[str, Any]) -> None:
    q.conn.execute(
        "UPDATE approvals SET status = 'failed', resolution = ? WHERE id = ?",
        (packb(resolution), approval_id),
    )


def max_approval_id(q: Queries) -> int:
    return q.max_id("approvals")


# --- agents, as the control plane needs them -----------------------------------------------


def agent_exists(q: Queries, name: str) -> bool:
    rows = q.conn.execute(
        "SELECT 1 FROM agents WHERE name = ? AND destroyed = 0", (name,)
    ).fetchall()
    return bool(rows)


def agent_config(q: Queries, name: str) -> dict[str, Any] | None:
    """An existing agent's stored config (``agent_deployment`` is the one lookup)."""
    found = agent_deployment(q, name)
    return found[0] if found is not None else None


def pending_spawn_of(q: Queries, name: str) -> int | None:
    """The id of a pending spawn approval for ``name``, if there is one."""
    rows = q.conn.execute(
        "SELECT id FROM approvals WHERE agent = ? AND status = 'pending' "
        "AND kind IN ('spawn', 'spawn_commit') LIMIT 1",
        (name,),
    ).fetchall()
    return int(str(rows[0][0])) if rows else None


def pending_applies_of(q: Queries, name: str) -> int:
    rows = q.conn.execute(
        "SELECT COUNT(*) FROM approvals WHERE agent = ? AND status = 'pending' "
        "AND kind = 'apply_commit'",
        (name,),
    ).fetchall()
    return int(str(rows[0][0]))


def insert_system_message(q: Queries, env: Envelope) -> bool:
    """Store a message from the control plane in this transaction, if its recipient
    exists. (The Bus is skipped on purpose: the message must commit together with the
    decision it reports, so it is sent exactly once.)"""
    if not agent_exists(q, env.to):
        return False
    q.insert_messages([env])
    return True


# --- drafts ---------------------------------------------------------------------------------


@dataclass
class DraftRecord:
    """A draft agent: its config repo exists, it does not run until its spawn is approved."""

    name: str
    requested_by: str
    created_at: float
    base_sha: str

    def to_wire(self, config_dir: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "requested_by": self.requested_by,
            "created_at": self.created_at,
            "base_sha": self.base_sha,
            "config_dir": config_dir,
            "ready": bool(self.base_sha),
        }


def drafts(q: Queries) -> list[DraftRecord]:
    rows = q.conn.execute(
        "SELECT name, requested_by, created_at, base_sha FROM drafts ORDER BY name"
    )
    return [DraftRecord(*r) for r in rows]


def insert_draft(q: Queries, d: DraftRecord) -> None:
    q.conn.execute(
        "INSERT INTO drafts (name, requested_by, created_at, base_sha) VALUES (?, ?, ?, ?)",
        (d.name, d.requested_by, d.created_at, d.base_sha),
    )


def set_draft_base(q: Queries, name: str, base_sha: str) -> None:
    q.conn.execute("UPDATE drafts SET base_sha = ? WHERE name = ?", (base_sha, name))


def delete_draft(q: Queries, name: str) -> bool:
    q.conn.execute("DELETE FROM drafts WHERE name = ?", (name,))
    return int(q.conn.changes()) == 1


# --- scheduled prompts ----------------------------------------------------------------------


@dataclass
class ScheduledPrompt:
    """A prompt the operator approved for delivery to ``agent`` at time ``at``."""

    id: int  # the id of the approval that allowed it
    agent: str
    at: float
    body: str
    requested_by: str
    state: str = "scheduled"
    message_id: int | None = None
    done_at: float | None = None
    detail: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "at": self.at,
            "text": self.body,
            "requested_by": self.requested_by,
            "state": self.state,
            "message_id": self.message_id,
            "done_at": self.done_at,
            "detail": self.detail,
        }


_SP_COLS = "id, agent, at, body, requested_by, state, message_id, done_at, detail"


def insert_scheduled(q: Queries, sp: ScheduledPrompt) -> None:
    q.conn.execute(
        "INSERT INTO scheduled_prompts (id, agent, at, body, requested_by) VALUES (?, ?, ?, ?, ?)",
        (sp.id, sp.agent, sp.at, sp.body, sp.requested_by),
    )


def scheduled(q: Queries, only_waiting: bool = True, limit: int = 1000) -> list[ScheduledPrompt]:
    sql = f"SELECT {_SP_COLS} FROM scheduled_prompts"
    if only_waiting:
        sql += " WHERE state = 'scheduled'"
    sql += " ORDER BY at LIMIT ?"
    return [ScheduledPrompt(*r) for r in q.conn.execute(sql, (limit,))]


def finish_scheduled(
    q: Queries, prompt_id: int, state: str, message_id: int | None, detail: str = ""
) -> bool:
    """Leave 'scheduled' for ``state``; False if it had already left it (exactly once)."""
    q.conn.execute(
        "UPDATE scheduled_prompts SET state = ?, message_id = ?, done_at = ?, detail = ? "
        "WHERE id = ? AND state = 'scheduled'",
        (state, message_id, time.time(), detail, prompt_id),
    )
    return int(q.conn.changes()) == 1


def agent_deployment(q: Queries, name: str) -> tuple[dict[str, Any], str] | None:
    """An existing agent's config and the commit it was deployed from ('' if none)."""
    rows = q.conn.execute(
        "SELECT config, deployed_sha FROM agents WHERE name = ? AND destroyed = 0", (name,)
    ).fetchall()
    return (dict(json.loads(str(rows[0][0]))), str(rows[0][1])) if rows else None
