"""Who may do what: pure rules over agent configs, used by the Bus and the agent sockets.

Kept free of actors and IO so every rule is a plain function a test can call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hive.config import AgentConfig, McpServerConfig
from hive.federation.address import matches_any
from hive.wire import MANAGER, OPERATOR, SYSTEM, WireError

MANAGER_ONLY_OPS = frozenset(
    {
        "kick_agent",
        "request_spawn",
        "request_spawn_draft",
        "request_spawn_commit",
        "request_apply_commit",
        "schedule_prompt",
    }
)


def check_send(sender: AgentConfig | None, sender_name: str, to: str) -> None:
    """Raise if ``sender_name`` may not send to ``to``.

    The operator and the system may send anywhere; so may the manager. Other agents are
    limited by their ``allowed_recipients`` when it is set (unset: unrestricted).
    """
    if sender_name in (OPERATOR, SYSTEM, MANAGER) or sender is None:
        return
    allowed = sender.allowed_recipients
    if allowed is None or to in allowed or ("@" in to and matches_any(allowed, to)):
        return  # "bob@beta" and "*@beta" name agents of another hive
    listed = ", ".join(allowed) if allowed else "nobody"
    raise WireError(
        "not_allowed",
        f"agent '{sender_name}' may not send to '{to}': not in allowed_recipients "
        f"(allowed: {listed})",
    )


def mcp_pooled(agent: AgentConfig, server: McpServerConfig) -> bool:
    """Whether ``agent`` reaches its extra MCP server ``server`` through the MCP pool (one
    process, run by the supervisor, shared with other agents) rather than starting its own.

    Only agents in the ``process`` sandbox share: they already run as the supervisor's user
    with no isolation, so a shared process gives none of them anything new. A sandboxed
    agent's servers run inside its own sandbox, as its own user; so does a server declared
    ``shared = false`` (docs/security.md).
    """
    return server.shared and agent.sandbox == "process"


def check_manager_only(agent_name: str, op: str) -> None:
    if op in MANAGER_ONLY_OPS and agent_name != MANAGER:
        raise WireError("manager_only", f"'{op}' is for the manager agent only")


@dataclass
class TokenBucket:
    """A rate limit of ``per_minute`` with bursts up to the same size."""

    per_minute: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens, self.stamp = self.per_minute, now
        self.tokens = min(self.per_minute, self.tokens + (now - self.stamp) * self.per_minute / 60)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
