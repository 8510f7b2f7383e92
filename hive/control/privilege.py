"""The boundary between root and the operator (docs/security.md, "Root and the operator").

Root (or the daemon's own user) already has the host, and hive.toml is theirs: a caller
the admin socket sees as uid 0, or as the daemon's own uid, may do anything. Everyone else
who acts on the hive, the dashboard's token holder and hivectl of a ``hive-admin``
member, is the *operator*: fleet-wide power, but not the host. The operator may put an
agent only in a sandbox that ``[hive] operator_sandboxes`` lists (spawn, and approving a
spawn or a config change), and the dashboard's terminal opens only in those sandboxes.
By default that is bwrap and nspawn: "process" runs an agent as the supervisor's own user
(root under systemd), so an operator who could choose it would get a root shell.

An agent's other settings (its MCP servers' commands and env, its own env, packages,
scripts) run inside its sandbox as its own uid, with no more power than the Bash it has
anyway, so the sandbox is the one thing to check.

>>> caller_is_root(0), caller_is_root(None), caller_is_root(os.geteuid())
(True, False, True)
>>> resolved_sandbox("bwrap")
'bwrap'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import trio

from hive.wire import WireError

if TYPE_CHECKING:
    from hive.config import AgentConfig, HiveConfig

NEEDS_ROOT = "needs_root"


def caller_is_root(peer_uid: int | None) -> bool:
    """A caller with every power the daemon has: uid 0, or the daemon's own uid. ``None``
    (the dashboard: a token, not a uid) is never one."""
    return peer_uid is not None and peer_uid in (0, os.geteuid())


def resolved_sandbox(name: str) -> str:
    """The backend ``name`` runs an agent in on this host ("auto" is bwrap or process).
    May run a probe (bwrap's, cached): call it off the trio thread."""
    if name != "auto":
        return name
    from hive.sandboxes import auto_sandbox

    return auto_sandbox().name


def refusal(agent: AgentConfig, hive: HiveConfig) -> str | None:
    """Why the operator may not give ``agent`` its sandbox (None: they may)."""
    actual = resolved_sandbox(agent.sandbox)
    if actual in hive.operator_sandboxes:
        return None
    shown = f"'{agent.sandbox}' (here: {actual})" if actual != agent.sandbox else f"'{actual}'"
    why = (
        "runs it as the supervisor's own user (root under systemd)"
        if actual == "process"
        else "is not one the operator may choose"
    )
    allowed = ", ".join(hive.operator_sandboxes) or "none"
    return (
        f"agent '{agent.name}' is in sandbox {shown}, which {why} "
        f"([hive] operator_sandboxes in hive.toml: {allowed})"
    )


async def check_config(
    hive: HiveConfig, agent: AgentConfig, peer_uid: int | None, doing: str
) -> None:
    """Raise ``needs_root`` if a caller who is not root may not ``doing`` (spawn, approve)
    an agent with this config."""
    if caller_is_root(peer_uid):
        return
    why = await trio.to_thread.run_sync(refusal, agent, hive)
    if why is not None:
        raise WireError(
            NEEDS_ROOT,
            f"{doing} refused: {why}; only root may do this (hivectl as root), or list "
            "that sandbox in operator_sandboxes",
        )


async def check_stored_config(
    hive: HiveConfig, raw: dict[str, Any], peer_uid: int | None, doing: str
) -> None:
    """``check_config`` for a config as an approval stores it."""
    from hive.config import AgentConfig, ConfigError

    try:
        agent = AgentConfig.from_dict(raw)
    except ConfigError as exc:  # approving it would fail anyway; say so now
        raise WireError("bad_config", f"{doing} refused: {exc}") from None
    await check_config(hive, agent, peer_uid, doing)


def terminal_refusal(agent: AgentConfig, hive: HiveConfig) -> str | None:
    """Why the dashboard may not open a shell in ``agent``'s sandbox (None: it may).
    The dashboard is always the operator; a shell in a sandbox the operator may not choose
    would be a shell as the supervisor's user."""
    why = refusal(agent, hive)
    if why is None:
        return None
    return f"{NEEDS_ROOT}: {why}; a shell there is the supervisor's user's shell"
