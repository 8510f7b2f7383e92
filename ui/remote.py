"""The dashboard's side of federation: which hive an agent name points at, and the fleet.

``bob@beta`` in a dashboard URL or send box is agent bob on hive beta. The dashboard does
not reach beta itself: it hands ``bob@beta`` to the same admin verbs hivectl uses (the
federated verb table routes them over NATS to beta, which authorises and runs them), and
reads the fleet view the link keeps from the JetStream key-value bucket. A hive without
``[federation]`` refuses a remote name with ``not_federated`` and shows no fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hive.federation.address import split, validate_hive_name
from hive.ui.calls import ApiError
from hive.wire import WireError, validate_agent_name

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

# The row actions another hive runs for us (hive.federation.fleet.REMOTE_VERBS, less the
# ones the overview does not offer on a row); cancel, reset, start, stop stay local.
REMOTE_ROW_OPS = ("pause", "resume", "restart", "kick")


@dataclass(frozen=True)
class Target:
    """An agent the operator names: ``address`` is what the verbs take (``bob`` or
    ``bob@beta``), ``agent`` its bare name, ``hive`` None for an agent of this hive."""

    address: str
    agent: str
    hive: str | None


def own_hive(ctx: HiveContext) -> str | None:
    fed = ctx.config.federation
    return fed.name if fed is not None else None


def target(ctx: HiveContext, name: str) -> Target:
    """``name`` (``bob`` or ``bob@beta``) checked: a clear 400 for a malformed half, and
    ``not_federated`` for a remote name on a hive that has no federation."""
    agent, hive = split(name)
    try:
        validate_agent_name(agent)
        if hive is not None:
            validate_hive_name(hive)
    except WireError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    own = own_hive(ctx)
    if hive is None or hive == own:
        return Target(agent, agent, None)
    if own is None:
        raise ApiError(
            400,
            "not_federated",
            f"'{name}' is on another hive, and this hive has no [federation] table",
        )
    return Target(f"{agent}@{hive}", agent, hive)


def check_hive_known(ctx: HiveContext, hive: str) -> None:
    """Refuse a send to a hive the federation has never shown (a typo would otherwise wait
    in the outbox for a hive that never comes). Before the link has read the fleet bucket
    at all there is nothing to check against, and the outbox takes the message."""
    fleet = ctx.federation.fleet if ctx.federation is not None else {}
    if fleet and hive not in fleet:
        raise ApiError(
            404,
            "unknown_hive",
            f"no hive named '{hive}' in the federation (known: {', '.join(sorted(fleet))}); "
            "nothing was sent",
        )


def fleet_reply(ctx: HiveContext) -> dict[str, Any]:
    """This hive's name and every hive's row (agents, link health), this hive's first."""
    own = own_hive(ctx)
    if own is None or ctx.federation is None:
        return {"hive": None, "hives": []}
    from hive.federation.fleet import fleet_view

    rows = fleet_view(ctx)
    rows.sort(key=lambda r: (r["hive"] != own, r["hive"]))
    return {"hive": own, "hives": [_hive_row(r) for r in rows]}


def _hive_row(row: dict[str, Any]) -> dict[str, Any]:
    outbox = row.get("outbox") or {}
    return {
        "hive": row["hive"],
        "connected": bool(row.get("connected")),
        "rtt": row.get("rtt"),
        "lag": int(row.get("lag") or 0),
        "outbox": {str(k): int(v) for k, v in outbox.items()},
        "age": float(row.get("age") or 0.0),
        "agents": list(row.get("agents") or []),
    }
