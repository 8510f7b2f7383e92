"""The Attention actor: keeps the operator's inbox (hive.attention) from the StateHub.

It listens for what needs the operator — failure, needs_login, crash and budget events,
approvals and questions, operator mail — and for agent rows, and turns each into inbox
changes written through the Store. Every committed change is published to the hub as an
``attention`` update (``{"items": [...rows...], "counts": {...}}``), so every open page
and ``hivectl subscribe`` sees the same inbox. When an agent's failed / needs_login flag
clears (a reset, a login), its item is settled. Done items older than 14 days are pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hive import attention
from hive.actors.base import HiveContext
from hive.actors.hub import FeedTick, HubFedActor, HubFeed, HubUpdate, Publish
from hive.actors.store import Write
from hive.store import Queries

log = logging.getLogger(__name__)

WATCHED = frozenset({"event", "approval", "question", "operator_message", "agent"})


def publish_changes(ctx: HiveContext, rows: list[dict[str, Any]], counts: dict[str, Any]) -> None:
    """Tell every watcher what changed in the inbox, and the open counts after it."""
    ctx.refs.tell("hub", Publish("attention", "", {"items": rows, "counts": counts}))


class AttentionActor(HubFedActor):
    """The attention inbox's writer: hub updates in, inbox items out."""

    child_id = "attention"

    def __init__(self, ctx: HiveContext) -> None:
        # Approvals and questions pending before it listened come first, as updates.
        super().__init__(ctx, HubFeed(ctx, WATCHED, replay=("approval", "question")))
        self.flagged: dict[str, tuple[bool, bool]] = {}  # agent -> (failed, needs_login)

    def receive(self, message: Any) -> Any:
        match message:
            case HubUpdate(update=update):
                self._update(update)
            case FeedTick():
                self.tick()
            case _:
                log.warning("attention: unexpected message %r", message)
        return None

    def prune(self, now: float) -> None:
        self.ctx.refs.tell("store", Write(lambda q: attention.prune(q, now)))

    def _update(self, update: dict[str, Any]) -> None:
        if update.get("kind") == "agent":
            self._agent_row(update.get("data"))
            return
        changes = attention.derive(update)
        if changes:
            self._write(changes)

    def _agent_row(self, row: Any) -> None:
        """Settle an agent's failed / needs_login item once the flag has cleared."""
        if not isinstance(row, dict):
            return
        name = str(row.get("name"))
        now = (bool(row.get("failed")), bool(row.get("needs_login")))
        before = self.flagged.get(name, (True, True))  # first sight: settle what is stale
        self.flagged[name] = now
        settle = [
            attention.Settle(f"{flag}:{name}")
            for flag, was, is_ in zip(("failed", "needs_login"), before, now, strict=True)
            if was and not is_
        ]
        if settle:
            self._write(settle)

    def _write(self, changes: Sequence[attention.Change]) -> None:
        ctx = self.ctx

        def op(q: Queries) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            return attention.apply(q, changes), attention.counts(q)

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("attention: %d change(s) not written: %s", len(changes), error)
            elif result[0]:
                publish_changes(ctx, *result)

        if not ctx.refs.tell("store", Write(op, done)):
            log.warning("attention: store restarting, %d change(s) dropped", len(changes))
