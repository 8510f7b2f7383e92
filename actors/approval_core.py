"""What the parts of the Approvals actor share: its state, the Resolve message, and how it
commits to the store and tells others (hive.actors.approvals puts the parts together).

Each concern is a mixin over ``ApprovalsCore``: questions (hive.actors.approval_questions),
requests and drafts (hive.actors.approval_requests), scheduled prompts
(hive.actors.scheduled_prompts). They are one actor, so one thread owns all of this state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pykka

from hive.actors.base import HiveContext, Reply, SupervisedActor
from hive.actors.hub import Publish
from hive.actors.store import Write
from hive.control.records import ApprovalRecord, DraftRecord, ScheduledPrompt
from hive.store import IdAllocator, Queries
from hive.wire import Envelope

log = logging.getLogger("hive.actors.approvals")


@dataclass(frozen=True)
class Resolve:
    """approve / deny / answer / cancel / expire one item. ``owner``: only the agent who
    asked may resolve (an agent withdrawing its own question)."""

    id: int
    action: str
    by: str
    text: str = ""
    owner: str | None = None
    reply: Reply | None = None


@dataclass(frozen=True)
class Done:
    """A store completion, brought back onto this actor's thread."""

    then: Callable[[Any, BaseException | None], None]
    value: Any
    error: BaseException | None
    commit: int  # the number of the transaction it completes (see CommitClock)


@dataclass(frozen=True)
class Call:
    """Run ``fn`` on this actor's thread (reports from IO tasks)."""

    fn: Callable[[], None]


class ActionFailed(Exception):
    """An approved action that cannot be done; the approval ends 'failed' with this."""


@dataclass
class Item:
    """One pending approval or question, and the replies held for its answer."""

    rec: ApprovalRecord
    committed: bool = True
    waiters: dict[int, Reply] = field(default_factory=dict)

    @property
    def hub_kind(self) -> str:
        return "question" if self.rec.is_question else "approval"


class ApprovalsCore(SupervisedActor):
    """The Approvals actor's state and the helpers every part uses."""

    child_id = "approvals"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        self.items: dict[int, Item] = {}
        self.waiter_index: dict[int, int] = {}  # waiter id -> question id
        self.drafts: dict[str, DraftRecord] = {}
        self.drafting: set[str] = set()
        self.scheduled: dict[int, ScheduledPrompt] = {}
        self.ids = IdAllocator(1)

    def _resolve(self, m: Resolve) -> None:
        """Resolve one item (hive.actors.approvals)."""
        raise NotImplementedError

    def _write(
        self,
        op: Callable[[Queries], Any],
        then: Callable[[Any, BaseException | None], None],
        mail: list[Envelope] | None = None,
    ) -> None:
        """Commit ``op``; run ``then(value, error)`` on this actor's thread afterwards.
        ``mail``: the messages ``op`` stores (filled in by it, as it decides in the
        transaction). If this actor has died by the time they are committed, their
        recipients are told from here: else they would sit pending in the store, in
        nobody's inbox, until the daemon restarts."""
        me = self.actor_ref
        ctx = self.ctx
        commits = ctx.commits

        def numbered(q: Queries) -> tuple[Any, int]:
            return op(q), commits.open

        def done(value: Any, error: BaseException | None) -> None:
            result, commit = value if error is None else (None, 0)
            try:
                me.tell(Done(then, result, error, commit))
            except pykka.ActorDeadError:
                hand_to_successor(ctx, Done(then, result, error, commit), mail or [])

        if not self.ctx.refs.tell("store", Write(numbered, done)):
            then(None, RuntimeError("the store is restarting"))

    def _publish(self, item: Item) -> None:
        self.ctx.refs.tell("hub", Publish(item.hub_kind, str(item.rec.id), item.rec.to_wire()))

    def _tell_agent(self, name: str, message: object) -> None:
        self.ctx.refs.tell(self.ctx.agent_ref_name(name), message)

    def _deliver(self, envs: list[Envelope], held: frozenset[int] = frozenset()) -> None:
        """Committed system messages: wake their recipients, show them to subscribers.
        Messages in ``held`` are on their way in a held reply: the recipient keeps them
        aside until that reply is acknowledged (or its connection closes)."""
        from hive.actors.agent import Arrived

        for env in envs:
            arrived = Arrived((env,), COMPLETING_COMMIT.get(), held=env.id in held)
            self._tell_agent(env.to, arrived)
            self.ctx.refs.tell("hub", Publish("message", str(env.id), env.to_wire()))


def answer(reply: Reply | None, result: Any) -> None:
    """Reply, when someone waits for one."""
    if reply is not None:
        reply(result)


def configure(needs_update: bool) -> object:
    """The agent's Configure message (imported late: the agent module imports much)."""
    from hive.actors.agent import Configure

    return Configure(needs_update=needs_update)


# The number of the transaction whose completion (Done) is being handled: the messages it
# reports carry it to their recipients (hive.actors.base.CommitClock). A context variable,
# not actor state: a successor may run a dead actor's completion (see hand_to_successor).
COMPLETING_COMMIT: ContextVar[int] = ContextVar("completing_commit", default=0)

HANDOVER_RETRY_SECONDS = 0.05
HANDOVER_TRIES = 100


def hand_to_successor(
    ctx: HiveContext, done: Done, mail: list[Envelope], tries: int = HANDOVER_TRIES
) -> None:
    """A write committed after its actor died: its successor runs the completion (the
    reply it owes, the mail it reports), once the Supervisor has registered it. The dead
    actor's state, which the completion reads, is no longer touched by anyone else. If no
    successor comes, the mail is at least told to its recipients."""
    if ctx.refs.tell("approvals", done):
        return
    if tries <= 0:
        if done.error is None and mail:
            tell_recipients(ctx, mail, done.commit)
        return
    ctx.io.call_later(HANDOVER_RETRY_SECONDS, lambda: hand_to_successor(ctx, done, mail, tries - 1))


def tell_recipients(ctx: HiveContext, envs: list[Envelope], commit: int) -> None:
    """Committed mail whose writer died before it could tell anyone: an ordinary inbox
    message now (no held reply survived the writer)."""
    from hive.actors.agent import Arrived

    for env in envs:
        ctx.refs.tell(ctx.agent_ref_name(env.to), Arrived((env,), commit))
