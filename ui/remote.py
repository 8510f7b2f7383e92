"""The dashboard's side of federation: which hive an agent name points at, and the fleet.

``bob@beta`` in a dashboard URL or send box is agent bob on hive beta. The dashboard does
not reach beta itself: it hands ``bob@beta`` to the same admin verbs hivectl uses (the
federated verb table routes them over NATS to beta, which authorises and runs them), and
reads the fleet view the link keeps from the JetStream key-value bucket. A hive without
``[federation]`` refuses a remote name with ``not_federated`` and shows no fleet.

The other hives' pending questions: each hive's fleet row counts them, and only for a
hive whose count is above zero does ``remote_questions`` ask it (the ``questions`` verb,
over NATS, authorised by that hive), so an idle federation costs no request.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from hive.federation.address import split, validate_hive_name
from hive.federation.fleet import MAX_REMOTE_QUESTIONS
from hive.federation.peer_input import question_row
from hive.ui.calls import ApiError, call_verb
from hive.wire import WireError, validate_agent_name

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

# The row actions another hive runs for us (hive.federation.fleet.REMOTE_VERBS, less the
# ones the overview does not offer on a row); cancel, reset, start, stop stay local.
REMOTE_ROW_OPS = ("pause", "resume", "restart", "kick")
# How long the questions panel waits for a hive's list (a dead hive answers at once with
# no responders; this bounds a hive that hangs).
QUESTIONS_TIMEOUT = 5.0


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


def question_ref(ctx: HiveContext, raw: str) -> tuple[str, str | None]:
    """A question's reference from the path: ``12`` (this hive's) or ``12@beta`` (beta's
    question 12): the id part, and the hive (None: this one)."""
    ref, hive = split(raw)
    if hive is None:
        return ref, None
    try:
        validate_hive_name(hive)
    except WireError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    own = own_hive(ctx)
    if hive == own:
        return ref, None
    if own is None:
        raise ApiError(
            400,
            "not_federated",
            f"question '{raw}' is on another hive, and this hive has no [federation] table",
        )
    return ref, hive


async def remote_questions(ctx: HiveContext) -> dict[str, Any]:
    """The pending questions of the other hives' agents, asked of each hive whose fleet row
    counts some (at once, each bounded by QUESTIONS_TIMEOUT): ``questions`` keyed
    ``12@beta`` with the agent as ``bob@beta``; ``left_off`` per hive (beyond what one
    reply carries); ``errors`` per hive that refused or did not answer."""
    own = own_hive(ctx)
    out: dict[str, Any] = {"questions": [], "left_off": {}, "errors": []}
    if own is None or ctx.federation is None:
        return out
    asking = sorted(
        hive
        for hive, row in ctx.federation.fleet.items()
        if hive != own and int(row.get("questions") or 0) > 0
    )
    async with trio.open_nursery() as nursery:
        for hive in asking:
            nursery.start_soon(_questions_of, ctx, hive, out)
    out["questions"].sort(key=lambda q: (q["hive"], q["id"]))
    out["errors"].sort(key=lambda e: e["hive"])
    return out


@dataclass
class _Asking:
    """One questions request to one hive, shared by every page that wants it meanwhile."""

    done: trio.Event = field(default_factory=trio.Event)
    reply: dict[str, Any] | ApiError | None = None


# Per link (one per daemon): hive -> its latest request. Every open page polls; while a
# request to a hive is on its way, the other pages wait for it rather than send their own,
# so a hive that does not answer has one request at a time outstanding, not one per page.
_ASKING: weakref.WeakKeyDictionary[Any, dict[str, _Asking]] = weakref.WeakKeyDictionary()


async def _ask_questions(ctx: HiveContext, hive: str) -> dict[str, Any]:
    asking = _ASKING.setdefault(ctx.federation, {})
    latest = asking.get(hive)
    if latest is None or latest.done.is_set():
        latest = asking[hive] = _Asking()
        try:
            latest.reply = await call_verb(ctx, "questions", {"hive": hive}, QUESTIONS_TIMEOUT)
        except ApiError as exc:
            latest.reply = exc
        finally:
            latest.done.set()
    assert latest is not None
    await latest.done.wait()
    if isinstance(latest.reply, ApiError):
        raise latest.reply
    if not isinstance(latest.reply, dict):  # its first asker went away before the reply
        raise ApiError(504, "timeout", f"hive '{hive}' did not answer in time")
    return latest.reply


async def _questions_of(ctx: HiveContext, hive: str, out: dict[str, Any]) -> None:
    try:
        reply = await _ask_questions(ctx, hive)
    except ApiError as exc:
        out["errors"].append({"hive": hive, "code": exc.code, "message": exc.message})
        return
    # Another hive's reply is checked like any input: a malformed one is that hive's
    # error, never the whole panel's.
    shown = reply.get("questions") if isinstance(reply, dict) else None
    total = reply.get("total") if isinstance(reply, dict) else None
    if not isinstance(shown, list) or not isinstance(total, int):
        out["errors"].append(
            {"hive": hive, "code": "bad_reply", "message": f"hive '{hive}' sent no question list"}
        )
        return
    kept = shown[:MAX_REMOTE_QUESTIONS]  # what a hive answers at most (a peer may not)
    for q in kept:
        row = question_row(q)
        if row is None:
            continue  # not a question row (another version of hive?): nothing to answer
        out["questions"].append(
            {**row, "hive": hive, "key": f"{row['id']}@{hive}", "agent": f"{row['agent']}@{hive}"}
        )
    left = max(total, len(shown)) - len(kept)
    if left > 0:
        out["left_off"][hive] = left


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
    """A row as the page shows it (the link checked its types: peer_input.fleet_row)."""
    outbox = row.get("outbox") or {}
    error = {"error": row["error"]} if "error" in row else {}
    return {
        **error,
        "hive": row["hive"],
        "connected": bool(row.get("connected")),
        "rtt": row.get("rtt"),
        "lag": int(row.get("lag") or 0),
        "outbox": {str(k): int(v) for k, v in outbox.items()},
        "age": float(row.get("age") or 0.0),
        "agents": list(row.get("agents") or []),
        "questions": int(row.get("questions") or 0),
    }
