"""The agent status row: one typed record, made by the Agent actor, kept by the StateHub,
shown by hivectl (``list``, ``status``) and the dashboard (``/api/agents``, the live stream).

A TypedDict, not a class: the row travels as it is through msgpack frames and JSON, and
importing this module costs hivectl nothing. The dashboard's OpenAPI document takes its
JSON Schema from these same declarations.

>>> STATUS_FIELDS[:3]
('name', 'parent', 'runtime')
>>> state_of({"failed": False, "paused": True, "turn_state": "idle"})
'paused'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import TypedDict  # pydantic reads it on Python 3.11 (the OpenAPI schema)


class LastTurn(TypedDict):
    """The agent's newest ended turn (rebuilt from the store after a restart)."""

    id: int
    started_at: float
    ended_at: float
    duration: float | None
    exit_class: str  # hive.runtimes.base.ExitClass
    detail: str | None


class AgentStatus(TypedDict):
    """One agent as the operator sees it. Field order is the order hivectl prints them."""

    name: str
    parent: str
    runtime: str
    sandbox: str
    running: bool  # none of stopped, paused, failed, needs_login
    paused: bool
    stopped: bool
    failed: bool
    failed_reason: str
    needs_login: bool
    needs_update: bool
    over_budget: bool  # parked until the next UTC day: its daily budget is spent (hive.spend)
    budget_reason: str  # which budget, how much spent ("" when not over)
    cost_today_usd: float  # what its turns cost today (UTC), as the runtime reported
    turn_state: str  # idle, queued, starting, thinking, tool, waiting_recv, waiting_operator
    queue_reason: str  # queued: why the turn waits (hive.actors.admission); else ""
    turn_id: int | None
    active_model: str
    deployed_sha: str
    inbox_depth: int  # pending + delivered-but-unacknowledged messages
    status_text: str  # what the agent last said it is doing (hive_status)
    status_set_at: float | None  # when, while running; else None
    retry_at: float | None  # the next restart after a crash, unix seconds
    crashes_in_window: int
    last_turn: LastTurn | None
    url: str  # the agent's dashboard page


STATUS_FIELDS: tuple[str, ...] = tuple(AgentStatus.__annotations__)

# The flags that override the turn state, most serious first.
_STATE_FLAGS = ("failed", "needs_login", "over_budget", "stopped", "paused")


def state_of(row: Mapping[str, Any]) -> str:
    """The one word for an agent's state: its most serious flag, else its turn state."""
    for flag in _STATE_FLAGS:
        if row.get(flag):
            return flag
    return str(row.get("turn_state") or "idle")
