"""The Approvals actor: everything that waits for the operator's word.

Kinds: operator questions (``ask_operator``), spawn (one-shot), spawn_commit (a draft's
committed config), apply_commit (a config change for a running agent) and schedule_prompt.
It also keeps the manager's drafts and the approved scheduled prompts.

Rules it keeps:
- Nothing is acknowledged before it is committed: a request is answered with its id once
  its row is in the database, a resolution once the status change is.
- Each item is resolved exactly once. Every resolver (operator, dashboard, the TTL timer,
  the asking agent withdrawing its question) runs the same conditional update in the
  store; the first to commit wins and the others are told "already resolved as X".
- Approving runs the action in the same transaction as the status change (create the
  agent's row, record the scheduled prompt, ...); if the action cannot be done the row
  ends ``failed`` with the reason, never half-done. What happens outside the database
  (starting the agent's actor) follows the commit.
- An expired question answers the asker "expired", never "denied".
- The asker's reply is held (not polled). If nobody holds it any more when the question is
  resolved (the turn ended, the daemon restarted), the outcome goes to the asker's inbox
  instead, so it is never lost. An agent that asks the same question again while it is
  pending waits on the same question: a turn re-run after a restart does not ask twice.
- State is rebuilt from the store at start: pending items, their TTL timers, drafts, and
  scheduled prompts with their timers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pykka

from hive.actors.base import (
    HiveContext,
    InjectedFault,
    InjectFault,
    Reply,
    Republish,
    SupervisedActor,
    tell_quietly,
)
from hive.actors.hub import Publish
from hive.actors.store import Read, Write
from hive.config import AgentConfig
from hive.control import records, tasks
from hive.control.records import QUESTION, ApprovalRecord, DraftRecord, ScheduledPrompt
from hive.store import IdAllocator, Queries
from hive.wire import OPERATOR, SYSTEM, Envelope, WireError

log = logging.getLogger(__name__)

MAX_QUESTION_TTL = 7 * 86400.0
MAX_OPEN_QUESTIONS = 20  # per agent: a looping agent cannot bury the operator
STATUS_OF = {
    "approve": "approved",
    "deny": "denied",
    "answer": "answered",
    "cancel": "cancelled",
    "expire": "expired",
}


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """An agent's ``ask_operator``: ``reply`` is held until the question is resolved."""

    agent: str
    question: str
    options: tuple[str, ...]
    ttl_seconds: float | None
    waiter_id: int
    reply: Reply


@dataclass(frozen=True)
class WaiterGone:
    """The connection holding an ask_operator reply closed."""

    waiter_id: int


@dataclass(frozen=True)
class Propose:
    """A request for the operator's approval (spawn, spawn_commit, apply_commit,
    schedule_prompt). Replies ``{"id", "kind", "status": "pending"}`` once stored."""

    kind: str
    agent: str
    requested_by: str
    description: str
    details: dict[str, Any]
    reply: Reply


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
class ListPending:
    reply: Reply
    agent: str | None = None


@dataclass(frozen=True)
class ListDrafts:
    reply: Reply


@dataclass(frozen=True)
class ListScheduled:
    reply: Reply


@dataclass(frozen=True)
class SpawnNow:
    """The operator's own spawn: no approval needed, the operator is the approver."""

    config: AgentConfig
    reply: Reply


@dataclass(frozen=True)
class OpenDraft:
    """Create (or return) the draft ``name`` whose first commit holds ``toml_text``."""

    name: str
    requested_by: str
    toml_text: str
    reply: Reply


@dataclass(frozen=True)
class GetDraft:
    name: str
    reply: Reply


@dataclass(frozen=True)
class DiscardDraft:
    name: str
    reply: Reply


@dataclass(frozen=True)
class AgentDestroyed:
    """Withdraw the agent's pending questions (it is being destroyed); replies
    ``{"cancelled": [ids]}`` once that is committed and the askers are answered."""

    name: str
    reply: Reply | None = None


@dataclass(frozen=True)
class _Done:
    """A store completion, brought back onto this actor's thread."""

    then: Callable[[Any, BaseException | None], None]
    value: Any
    error: BaseException | None
    commit: int  # the number of the transaction it completes (see CommitClock)


@dataclass(frozen=True)
class _Call:
    """Run ``fn`` on this actor's thread (reports from IO tasks)."""

    fn: Callable[[], None]


@dataclass(frozen=True)
class _PromptDue:
    id: int


class ActionFailed(Exception):
    """An approved action that cannot be done; the approval ends 'failed' with this."""


# --- state ----------------------------------------------------------------------------


@dataclass
class Item:
    rec: ApprovalRecord
    committed: bool = True
    waiters: dict[int, Reply] = field(default_factory=dict)

    @property
    def hub_kind(self) -> str:
        return "question" if self.rec.is_question else "approval"


class ApprovalsActor(SupervisedActor):
    child_id = "approvals"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        self.items: dict[int, Item] = {}
        self.waiter_index: dict[int, int] = {}  # waiter id -> question id
        self.drafts: dict[str, DraftRecord] = {}
        self.drafting: set[str] = set()
        self.scheduled: dict[int, ScheduledPrompt] = {}
        self.ids = IdAllocator(1)
        # While a store completion is handled: its transaction's number, which the
        # messages it reports carry to their recipients (hive.actors.base.CommitClock).
        self.completing_commit = 0

    # --- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        store = self.ctx.refs.get("store")
        if store is None:
            raise RuntimeError("store is not running")

        def load(
            q: Queries,
        ) -> tuple[list[ApprovalRecord], list[DraftRecord], list[ScheduledPrompt], int]:
            return (
                records.pending_approvals(q),
                records.drafts(q),
                records.scheduled(q),
                records.max_approval_id(q),
            )

        pending, drafts, scheduled, max_id = cast(
            tuple[list[ApprovalRecord], list[DraftRecord], list[ScheduledPrompt], int],
            store.ask(Read(load)),
        )
        self.ids = IdAllocator(max_id + 1)
        for rec in pending:
            item = Item(rec)
            self.items[rec.id] = item
            self._publish(item)
            self._arm_expiry(rec)
        for d in drafts:
            self.drafts[d.name] = d
            self._publish_draft(d)
        for sp in scheduled:
            self.scheduled[sp.id] = sp
            self._arm_prompt(sp)

    def on_stop(self) -> None:
        self._release_waiters("the hive is shutting down")

    def on_failure(self, *exc_info: Any) -> None:
        self._release_waiters("the approvals service restarted")
        super().on_failure(*exc_info)

    def _release_waiters(self, why: str) -> None:
        # A held reply must not hang forever: the question stays pending, and asking it
        # again waits on the same question.
        for item in self.items.values():
            for reply in item.waiters.values():
                reply(
                    WireError(
                        "unavailable",
                        f"{why}; question #{item.rec.id} is still pending: ask again to "
                        "keep waiting for the answer",
                    )
                )
            item.waiters.clear()

    # --- dispatch -----------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case InjectFault():
                raise InjectedFault(f"fault injected into {self.child_id}")
            case _Done(then=then, value=value, error=error, commit=commit):
                self.completing_commit = commit
                then(value, error)
            case _Call(fn=fn):
                fn()
            case Ask():
                self._ask(message)
            case WaiterGone(waiter_id=wid):
                qid = self.waiter_index.pop(wid, None)
                item = self.items.get(qid) if qid is not None else None
                if item is not None:
                    item.waiters.pop(wid, None)
            case Propose():
                self._propose(message)
            case Resolve():
                self._resolve(message)
            case ListPending(reply=reply, agent=agent):
                now = time.time()
                rows = [
                    {**i.rec.to_wire(now), "waiting": len(i.waiters)}
                    for i in sorted(self.items.values(), key=lambda i: i.rec.id)
                    if i.committed and (agent is None or i.rec.agent == agent)
                ]
                reply({"pending": rows})
            case ListDrafts(reply=reply):
                reply({"drafts": [self._draft_wire(d) for d in self.drafts.values()]})
            case ListScheduled(reply=reply):
                due = sorted(self.scheduled.values(), key=lambda sp: sp.at)
                reply({"scheduled": [sp.to_wire() for sp in due]})
            case SpawnNow(config=cfg, reply=reply):
                self._spawn_now(cfg, reply)
            case OpenDraft():
                self._open_draft(message)
            case GetDraft(name=name, reply=reply):
                d = self.drafts.get(name)
                if d is None or not d.base_sha:
                    reply(
                        WireError(
                            "not_found",
                            f"no draft named '{name}'; create one with request_spawn_draft",
                        )
                    )
                else:
                    reply(self._draft_wire(d))
            case DiscardDraft(name=name, reply=reply):
                self._discard_draft(name, reply)
            case AgentDestroyed(name=name, reply=reply):
                self._withdraw_questions(name, reply)
            case _PromptDue(id=pid):
                self._deliver_prompt(pid)
            case Republish():
                self._republish()
            case _:
                log.warning("approvals: unexpected message %r", message)
        return None

    # --- questions ----------------------------------------------------------------------

    def _ask(self, m: Ask) -> None:
        # The same question (text, options and TTL) asked again waits on the pending one; a
        # different TTL is a different question: joining would wait past the asker's TTL, or
        # give up before the first asker's.
        for item in self.items.values():
            rec = item.rec
            if (
                rec.is_question
                and rec.agent == m.agent
                and rec.details.get("question") == m.question
                and tuple(rec.details.get("options") or ()) == m.options
                and rec.details.get("ttl_seconds") == m.ttl_seconds
            ):
                item.waiters[m.waiter_id] = m.reply
                self.waiter_index[m.waiter_id] = rec.id
                return
        open_questions = sum(
            1 for i in self.items.values() if i.rec.is_question and i.rec.agent == m.agent
        )
        if open_questions >= MAX_OPEN_QUESTIONS:
            m.reply(
                WireError(
                    "too_many_questions",
                    f"'{m.agent}' already has {open_questions} questions waiting for the "
                    "operator; cancel_question the ones you no longer need, or wait",
                )
            )
            return
        now = time.time()
        rec = ApprovalRecord(
            id=self.ids.next(),
            kind=QUESTION,
            agent=m.agent,
            requested_by=m.agent,
            requested_at=now,
            description=m.question[:200],
            details={
                "question": m.question,
                "options": list(m.options),
                "ttl_seconds": m.ttl_seconds,
            },
            expires_at=now + m.ttl_seconds if m.ttl_seconds else None,
        )
        item = Item(rec, committed=False, waiters={m.waiter_id: m.reply})
        self.items[rec.id] = item
        self.waiter_index[m.waiter_id] = rec.id

        def stored(_: Any, error: BaseException | None) -> None:
            if error is not None:
                self.items.pop(rec.id, None)
                for wid, reply in item.waiters.items():
                    self.waiter_index.pop(wid, None)
                    reply(WireError("store_failed", f"question not stored: {error}"))
                return
            item.committed = True
            self._publish(item)
            self._arm_expiry(rec)

        self._write(lambda q: records.insert_approval(q, rec), stored)

    def _withdraw_questions(self, name: str, reply: Reply | None) -> None:
        ids = [
            i.rec.id
            for i in self.items.values()
            if i.rec.is_question and i.rec.agent == name and i.committed
        ]
        left = set(ids)
        if not ids:
            _answer(reply, {"cancelled": []})

        def one_done(qid: int) -> Reply:
            def done(_: Any) -> None:  # resolved, or lost to another resolver: either way
                left.discard(qid)
                if not left:
                    _answer(reply, {"cancelled": ids})

            return done

        for qid in ids:
            self._resolve(Resolve(qid, "cancel", SYSTEM, "agent destroyed", reply=one_done(qid)))

    def _arm_expiry(self, rec: ApprovalRecord) -> None:
        if rec.expires_at is None:
            return
        me = self.actor_ref
        self.ctx.io.call_later(
            rec.expires_at - time.time(),
            lambda: tell_quietly(me, Resolve(rec.id, "expire", SYSTEM)),
        )

    # --- requests -----------------------------------------------------------------------

    def _propose(self, m: Propose) -> None:
        rec = ApprovalRecord(
            id=self.ids.next(),
            kind=m.kind,
            agent=m.agent,
            requested_by=m.requested_by,
            requested_at=time.time(),
            description=m.description,
            details=m.details,
        )

        def op(q: Queries) -> str | None:
            conflict = _request_conflict(q, rec)
            if conflict is not None:
                return conflict
            if rec.kind == "apply_commit":
                q.set_agent_fields(rec.agent, needs_update=1)
            records.insert_approval(q, rec)
            return None

        def stored(conflict: str | None, error: BaseException | None) -> None:
            if error is not None:
                m.reply(WireError("store_failed", f"request not stored: {error}"))
                return
            if conflict is not None:
                m.reply(WireError("conflict", conflict))
                return
            item = Item(rec)
            self.items[rec.id] = item
            self._publish(item)
            if rec.kind == "apply_commit":
                self._tell_agent(rec.agent, _configure(True))
            m.reply({"id": rec.id, "kind": rec.kind, "status": "pending"})

        self._write(op, stored)

    # --- resolution ---------------------------------------------------------------------

    def _resolve(self, m: Resolve) -> None:
        status = STATUS_OF.get(m.action)
        if status is None:
            _answer(m.reply, WireError("bad_request", f"unknown action '{m.action}'"))
            return
        item = self.items.get(m.id)
        if m.action == "expire" and item is None:
            return  # the timer of an item resolved meanwhile
        if m.action == "cancel" and item is None and m.id in self.scheduled:
            self._cancel_prompt(m)
            return
        resolution: dict[str, Any] = {"by": m.by}
        if m.action == "answer":
            resolution["answer"] = m.text
        elif m.text:
            resolution["reason"] = m.text
        now = time.time()
        after: dict[str, Any] = {}  # filled in the transaction, read once it committed
        stored: list[Envelope] = []  # the notices it committed

        def op(q: Queries) -> tuple[str, ApprovalRecord | None, list[Envelope]]:
            rec = records.get_approval(q, m.id)
            if rec is None:
                return "missing", None, []
            if rec.status != "pending":
                return "lost", rec, []
            refusal = _refusal(rec, m)
            if refusal is not None:
                return refusal, rec, []
            if not records.claim(q, m.id, status, resolution, now):
                return "lost", records.get_approval(q, m.id), []
            rec.status, rec.resolved_at, rec.resolution = status, now, dict(resolution)
            if m.action == "approve":
                try:
                    with q.conn:  # a savepoint: a failed action leaves nothing behind
                        _apply(q, rec)
                except Exception as exc:
                    rec.status = "failed"
                    rec.resolution["error"] = str(exc)
                    records.mark_failed(q, rec.id, rec.resolution)
            if rec.kind == "apply_commit" and records.agent_exists(q, rec.agent):
                after["needs_update"] = records.pending_applies_of(q, rec.agent) > 0
                q.set_agent_fields(rec.agent, needs_update=int(after["needs_update"]))
            envs = []
            for env in _notices(rec, self.ctx.message_ids):
                if records.insert_system_message(q, env):
                    envs.append(env)
            stored.extend(envs)
            return "won", rec, envs

        def done(value: Any, error: BaseException | None) -> None:
            if error is not None:
                _answer(m.reply, WireError("store_failed", f"not resolved: {error}"))
                return
            outcome, rec, envs = value
            if outcome == "won":
                self._resolved(rec, envs, after.get("needs_update"))
                _answer(m.reply, rec.to_wire())
            elif outcome == "missing":
                _answer(m.reply, WireError("not_found", f"no approval or question #{m.id}"))
            elif outcome == "lost":
                what = "question" if rec.is_question else f"{rec.kind} approval"
                _answer(
                    m.reply,
                    WireError(
                        "already_resolved",
                        f"{what} #{rec.id} was already resolved as {rec.status}",
                    ),
                )
            else:
                _answer(m.reply, WireError("bad_request", outcome))

        self._write(op, done, mail=stored)

    def _resolved(
        self, rec: ApprovalRecord, envs: list[Envelope], needs_update: bool | None
    ) -> None:
        item = self.items.pop(rec.id, None)
        if item is None:
            item = Item(rec)
        item.rec = rec
        # The outcome's inbox copy, if the asker holds a reply that will carry it.
        held = [e.id for e in envs if e.meta.get("question") == rec.id] if item.waiters else []
        # The agent hears of the held copy before the reply can come back acknowledged.
        self._deliver(envs, frozenset(held))
        if rec.is_question:
            result: dict[str, Any] = {"id": rec.id, "status": rec.status}
            if rec.status == "answered":
                result["answer"] = rec.resolution.get("answer", "")
            if rec.resolution.get("reason"):
                result["reason"] = rec.resolution["reason"]
            if held:
                result["ack_ids"] = held
            for wid, reply in item.waiters.items():
                self.waiter_index.pop(wid, None)
                reply(result)
            item.waiters.clear()
        # Subscribers see the outcome, then the item leaves the pending snapshot.
        self.ctx.refs.tell("hub", Publish(item.hub_kind, str(rec.id), rec.to_wire()))
        self.ctx.refs.tell("hub", Publish(item.hub_kind, str(rec.id), None))
        if needs_update is not None and rec.status != "approved":
            self._tell_agent(rec.agent, _configure(needs_update))
        if rec.status != "approved":
            return
        details = rec.details
        if rec.kind in ("spawn", "spawn_commit"):
            cfg = AgentConfig.from_dict(details["config"])
            draft_of = None
            if rec.kind == "spawn_commit":
                draft = self.drafts.pop(cfg.name, None)
                draft_of = draft.requested_by if draft is not None else rec.requested_by
                self.ctx.refs.tell("hub", Publish("draft", cfg.name, None))
            self._start_agent(cfg, make_repo=rec.kind == "spawn", reply=None, draft_of=draft_of)
        elif rec.kind == "apply_commit":
            from hive.actors.supervisor import AddAgent

            self.ctx.refs.tell("supervisor", AddAgent(AgentConfig.from_dict(details["config"])))
        elif rec.kind == "schedule_prompt":
            sp = ScheduledPrompt(
                rec.id, rec.agent, float(details["at"]), str(details["text"]), rec.requested_by
            )
            self.scheduled[sp.id] = sp
            self._arm_prompt(sp)
            self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))

    # --- spawning -----------------------------------------------------------------------

    def _spawn_now(self, cfg: AgentConfig, reply: Reply) -> None:
        def op(q: Queries) -> str | None:
            if records.agent_exists(q, cfg.name):
                return f"an agent named '{cfg.name}' already exists"
            pending = records.pending_spawn_of(q, cfg.name)
            if pending is not None:
                return f"a spawn of '{cfg.name}' is waiting for approval as #{pending}"
            _create_agent(q, cfg, "")
            records.delete_draft(q, cfg.name)
            return None

        def done(conflict: str | None, error: BaseException | None) -> None:
            if error is not None:
                reply(WireError("store_failed", f"agent not created: {error}"))
            elif conflict is not None:
                reply(WireError("conflict", conflict))
            else:
                if self.drafts.pop(cfg.name, None) is not None:
                    self.ctx.refs.tell("hub", Publish("draft", cfg.name, None))
                self._start_agent(cfg, make_repo=True, reply=reply)

        self._write(op, done)

    def _start_agent(
        self, cfg: AgentConfig, make_repo: bool, reply: Reply | None, draft_of: str | None = None
    ) -> None:
        """After the agent's row is committed: directories (and a config repo) on the IO
        side, then the Supervisor starts its actor."""
        me = self.actor_ref

        def prepared(sha: str, error: str | None) -> None:
            tell_quietly(me, _Call(lambda: self._prepared(cfg, sha, error, reply)))

        self.ctx.io.spawn(tasks.prepare_agent, self.ctx, cfg, make_repo, prepared, draft_of)

    def _prepared(self, cfg: AgentConfig, sha: str, error: str | None, reply: Reply | None) -> None:
        from hive.actors.supervisor import AddAgent

        if error is not None:
            log.error("agent %s: %s", cfg.name, error)
            _answer(reply, WireError("spawn_failed", f"agent '{cfg.name}': {error}"))
            return

        def add(_: Any, err: BaseException | None) -> None:
            self.ctx.refs.tell("supervisor", AddAgent(cfg, reply))

        if sha:
            self._write(lambda q: q.set_agent_fields(cfg.name, deployed_sha=sha), add)
        else:
            add(None, None)

    # --- drafts -------------------------------------------------------------------------

    def _draft_wire(self, d: DraftRecord) -> dict[str, Any]:
        return d.to_wire(str(tasks.draft_dir(self.ctx, d.name, d.requested_by)))

    def _publish_draft(self, d: DraftRecord) -> None:
        self.ctx.refs.tell("hub", Publish("draft", d.name, self._draft_wire(d)))

    def _open_draft(self, m: OpenDraft) -> None:
        existing = self.drafts.get(m.name)
        if existing is not None and existing.base_sha:
            m.reply(self._draft_wire(existing))  # asking twice is harmless
            return
        if m.name in self.drafting:
            m.reply(WireError("conflict", f"draft '{m.name}' is being created; ask again"))
            return
        self.drafting.add(m.name)
        d = existing or DraftRecord(m.name, m.requested_by, time.time(), "")
        me = self.actor_ref

        def reserve(q: Queries) -> str | None:
            if existing is not None:
                return None
            if records.agent_exists(q, m.name):
                return f"an agent named '{m.name}' already exists"
            pending = records.pending_spawn_of(q, m.name)
            if pending is not None:
                return f"a spawn of '{m.name}' is waiting for approval as #{pending}"
            records.insert_draft(q, d)
            return None

        def reserved(conflict: str | None, error: BaseException | None) -> None:
            if error is not None or conflict is not None:
                self.drafting.discard(m.name)
                m.reply(
                    WireError("conflict", conflict)
                    if conflict
                    else WireError("store_failed", f"draft not stored: {error}")
                )
                return
            self.drafts[m.name] = d

            def report(sha: str, err: str | None) -> None:
                tell_quietly(me, _Call(lambda: self._draft_made(m, d, sha, err)))

            self.ctx.io.spawn(
                tasks.make_draft, self.ctx, m.name, d.requested_by, m.toml_text, report
            )

        self._write(reserve, reserved)

    def _draft_made(self, m: OpenDraft, d: DraftRecord, sha: str, error: str | None) -> None:
        if error is not None:
            self.drafting.discard(m.name)
            self.drafts.pop(m.name, None)
            self._write(
                lambda q: records.delete_draft(q, m.name),
                lambda _, __: m.reply(WireError("draft_failed", error)),
            )
            return

        def saved(_: Any, err: BaseException | None) -> None:
            self.drafting.discard(m.name)
            if err is not None:
                m.reply(WireError("store_failed", f"draft not stored: {err}"))
                return
            d.base_sha = sha
            self._publish_draft(d)
            m.reply(self._draft_wire(d))

        self._write(lambda q: records.set_draft_base(q, m.name, sha), saved)

    def _discard_draft(self, name: str, reply: Reply) -> None:
        def done(removed: bool, error: BaseException | None) -> None:
            if error is not None:
                reply(WireError("store_failed", f"draft not discarded: {error}"))
            elif not removed:
                reply(WireError("not_found", f"no draft named '{name}'"))
            else:
                self.drafts.pop(name, None)
                self.ctx.refs.tell("hub", Publish("draft", name, None))
                reply({"draft": name, "discarded": True})

        self._write(lambda q: records.delete_draft(q, name), done)

    # --- scheduled prompts --------------------------------------------------------------

    def _arm_prompt(self, sp: ScheduledPrompt) -> None:
        me = self.actor_ref
        self.ctx.io.call_later(sp.at - time.time(), lambda: tell_quietly(me, _PromptDue(sp.id)))

    def _deliver_prompt(self, pid: int) -> None:
        sp = self.scheduled.get(pid)
        if sp is None:
            return
        env = Envelope(
            id=self.ctx.message_ids.next(),
            sender=SYSTEM,
            to=sp.agent,
            body=sp.body,
            meta={"scheduled_prompt": sp.id, "requested_by": sp.requested_by},
        )

        def op(q: Queries) -> str:
            if not records.agent_exists(q, sp.agent):
                records.finish_scheduled(q, sp.id, "failed", None, "the agent no longer exists")
                return "failed"
            if not records.finish_scheduled(q, sp.id, "delivered", env.id):
                return "gone"
            q.insert_messages([env])
            return "delivered"

        def done(state: str | None, error: BaseException | None) -> None:
            if error is not None:
                log.error("scheduled prompt #%s not delivered: %s; retrying", sp.id, error)
                me = self.actor_ref
                self.ctx.io.call_later(5.0, lambda: tell_quietly(me, _PromptDue(sp.id)))
                return
            self.scheduled.pop(sp.id, None)
            sp.state = str(state)
            if state == "delivered":
                sp.message_id, sp.done_at = env.id, time.time()
                self._deliver([env])
            self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))

        self._write(op, done, mail=[env])

    def _cancel_prompt(self, m: Resolve) -> None:
        sp = self.scheduled[m.id]
        if m.owner is not None:
            _answer(m.reply, WireError("not_allowed", "an agent cannot cancel scheduled prompts"))
            return

        def done(changed: bool, error: BaseException | None) -> None:
            if error is not None:
                _answer(m.reply, WireError("store_failed", f"not cancelled: {error}"))
            elif not changed:
                _answer(
                    m.reply,
                    WireError("already_resolved", f"scheduled prompt #{m.id} was already sent"),
                )
            else:
                self.scheduled.pop(m.id, None)
                sp.state = "cancelled"
                self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))
                _answer(m.reply, sp.to_wire())

        self._write(lambda q: records.finish_scheduled(q, m.id, "cancelled", None, m.by), done)

    # --- helpers ------------------------------------------------------------------------

    def _write(
        self,
        op: Callable[[Queries], Any],
        then: Callable[[Any, BaseException | None], None],
        mail: list[Envelope] | None = None,
    ) -> None:
        """Commit ``op``; run ``then(value, error)`` on this actor's thread afterwards.
        ``mail``: the messages ``op`` stores (filled in by it, if it decides in the
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
                me.tell(_Done(then, result, error, commit))
            except pykka.ActorDeadError:
                if error is None and mail:
                    _tell_recipients(ctx, mail, commit)

        if not self.ctx.refs.tell("store", Write(numbered, done)):
            then(None, RuntimeError("the store is restarting"))

    def _republish(self) -> None:
        """The StateHub restarted with an empty snapshot: give it every pending approval
        and question (committed ones: the others publish when their write commits) and
        every draft again, or the dashboard would stop showing them."""
        for item in sorted(self.items.values(), key=lambda i: i.rec.id):
            if item.committed:
                self._publish(item)
        for d in self.drafts.values():
            if d.base_sha:
                self._publish_draft(d)

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
            arrived = Arrived((env,), self.completing_commit, held=env.id in held)
            self._tell_agent(env.to, arrived)
            self.ctx.refs.tell("hub", Publish("message", str(env.id), env.to_wire()))


# --- pure helpers (run inside store transactions or on the actor thread) -------------------


def _tell_recipients(ctx: HiveContext, envs: list[Envelope], commit: int) -> None:
    """Committed mail whose writer died before it could tell anyone: an ordinary
    inbox message now (no held reply survived the writer)."""
    from hive.actors.agent import Arrived

    for env in envs:
        ctx.refs.tell(ctx.agent_ref_name(env.to), Arrived((env,), commit))


def _answer(reply: Reply | None, result: Any) -> None:
    if reply is not None:
        reply(result)


def _configure(needs_update: bool) -> object:
    from hive.actors.agent import Configure

    return Configure(needs_update=needs_update)


def _request_conflict(q: Queries, rec: ApprovalRecord) -> str | None:
    name = rec.agent
    if rec.kind in ("spawn", "spawn_commit"):
        if records.agent_exists(q, name):
            return f"an agent named '{name}' already exists"
        pending = records.pending_spawn_of(q, name)
        if pending is not None:
            return f"a spawn of '{name}' is already waiting for the operator as #{pending}"
        if rec.kind == "spawn_commit" and name not in {d.name for d in records.drafts(q)}:
            return f"no draft named '{name}'; create one with request_spawn_draft"
    elif not records.agent_exists(q, name):
        return f"no agent named '{name}'"
    return None


def _refusal(rec: ApprovalRecord, m: Resolve) -> str | None:
    """Why ``m`` may not resolve ``rec`` (None: it may)."""
    if m.owner is not None and (not rec.is_question or rec.agent != m.owner):
        return f"#{rec.id} is not a question '{m.owner}' asked"
    if m.action == "answer" and not rec.is_question:
        return f"#{rec.id} is a {rec.kind} approval: approve or deny it"
    if m.action in ("approve", "deny") and rec.is_question:
        return f"#{rec.id} is a question: answer or cancel it"
    if m.action == "expire" and rec.expires_at is None:
        return f"#{rec.id} has no time limit"
    return None


def _create_agent(q: Queries, cfg: AgentConfig, sha: str) -> None:
    q.upsert_agent(cfg.name, cfg.parent, cfg.to_dict(), cfg.model)
    # A name used before (destroyed, state kept) starts clean.
    q.set_agent_fields(
        cfg.name, model=cfg.model, paused=0, failed=0, failed_reason="", needs_login=0,
        needs_update=0, stopped=0, deployed_sha=sha, status_text="", status_set_at=None,
    )  # fmt: skip


def _apply(q: Queries, rec: ApprovalRecord) -> None:
    """The database part of an approved action. Raises to fail it."""
    details = rec.details
    if rec.kind in ("spawn", "spawn_commit"):
        cfg = AgentConfig.from_dict(details["config"])
        if records.agent_exists(q, cfg.name):
            raise ActionFailed(f"an agent named '{cfg.name}' already exists")
        _create_agent(q, cfg, str(details.get("sha", "")))
        records.delete_draft(q, cfg.name)
    elif rec.kind == "apply_commit":
        cfg = AgentConfig.from_dict(details["config"])
        old = records.agent_config(q, rec.agent)
        if old is None:
            raise ActionFailed(f"agent '{rec.agent}' no longer exists")
        fields: dict[str, Any] = {
            "config": cfg.to_dict(),
            "parent": cfg.parent,
            "deployed_sha": str(details.get("sha", "")),
        }
        if old.get("model") != cfg.model:
            fields["model"] = cfg.model  # the commit changes the model: it wins
        q.set_agent_fields(rec.agent, **fields)
    elif rec.kind == "schedule_prompt":
        if not records.agent_exists(q, rec.agent):
            raise ActionFailed(f"agent '{rec.agent}' no longer exists")
        records.insert_scheduled(
            q,
            ScheduledPrompt(
                rec.id, rec.agent, float(details["at"]), str(details["text"]), rec.requested_by
            ),
        )
    else:
        raise ActionFailed(f"approving a {rec.kind} does nothing")


def _notices(rec: ApprovalRecord, ids: IdAllocator) -> list[Envelope]:
    """The messages that report a resolution, sent in the same transaction.

    A question's outcome is always one of them, even when the asker holds a reply for it:
    the held reply may never reach the asker (a closed connection, a crash before it was
    written), and the inbox is the one place that survives both. The asker acknowledges
    the held reply, which marks the inbox copy delivered; unacknowledged, it is delivered
    like any other message. (An asker who cancelled its own question needs no word.)"""
    out = []
    if rec.is_question:
        if rec.resolution.get("by") != rec.agent:
            result = {"id": rec.id, "status": rec.status, **rec.resolution}
            out.append(
                Envelope(
                    ids.next(), SYSTEM, rec.agent, _outcome_text(result), kind="event",
                    meta={"question": rec.id, "status": rec.status},
                )
            )  # fmt: skip
        return out
    if rec.requested_by not in ("", OPERATOR, SYSTEM):
        outcome = "approved but failed" if rec.status == "failed" else rec.status
        body = f"your {rec.kind} request #{rec.id} ({rec.description}) was {outcome}"
        if rec.resolution.get("reason"):
            body += f": {rec.resolution['reason']}"
        if rec.resolution.get("error"):
            body += f": {rec.resolution['error']}"
        out.append(
            Envelope(
                ids.next(), SYSTEM, rec.requested_by, body, kind="event",
                meta={"approval": rec.id, "kind": rec.kind, "status": rec.status},
            )
        )  # fmt: skip
    return out


def _outcome_text(result: dict[str, Any]) -> str:
    qid, status = result.get("id"), result.get("status")
    if status == "answered":
        return f"the operator answered your question #{qid}: {result.get('answer', '')}"
    if status == "expired":
        return (
            f"your question #{qid} expired with no answer. This is not a refusal: decide "
            "with what you know, or ask again"
        )
    if status == "cancelled":
        reason = f" ({result['reason']})" if result.get("reason") else ""
        return f"your question #{qid} was cancelled without an answer{reason}"
    return f"your question #{qid} ended as {status}"
