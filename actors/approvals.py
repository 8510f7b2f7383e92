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

This module is the actor: start-up, the dispatch of its messages, and resolution (shared by
every kind). Each concern is its own module, a mixin of the one actor: questions
(hive.actors.approval_questions), requests and drafts (hive.actors.approval_requests),
scheduled prompts (hive.actors.scheduled_prompts); their shared state and helpers are
hive.actors.approval_core. The message types are importable from here.
"""

from __future__ import annotations

import time
from typing import Any, cast

from hive.actors.approval_core import (
    COMPLETING_COMMIT,
    ActionFailed,
    Call,
    Done,
    Item,
    Resolve,
    answer,
    configure,
    log,
)
from hive.actors.approval_questions import (
    MAX_OPEN_QUESTIONS,
    MAX_QUESTION_TTL,
    AgentDestroyed,
    Ask,
    ListPending,
    QuestionsMixin,
    WaiterGone,
    question_notice,
)
from hive.actors.approval_requests import (
    SPAWNS,
    DiscardDraft,
    GetDraft,
    ListDrafts,
    OpenDraft,
    Propose,
    RequestsMixin,
    SpawnNow,
    apply_request,
    request_notice,
)
from hive.actors.base import InjectFault, Republish
from hive.actors.hub import Publish
from hive.actors.scheduled_prompts import ListScheduled, PromptDue, ScheduledMixin, apply_schedule
from hive.actors.store import Read
from hive.control import records
from hive.control.records import ApprovalRecord, DraftRecord, ScheduledPrompt
from hive.store import IdAllocator, Queries
from hive.wire import Envelope, WireError

__all__ = [
    "MAX_OPEN_QUESTIONS",
    "MAX_QUESTION_TTL",
    "STATUS_OF",
    "ActionFailed",
    "AgentDestroyed",
    "ApprovalsActor",
    "Ask",
    "DiscardDraft",
    "GetDraft",
    "ListDrafts",
    "ListPending",
    "ListScheduled",
    "OpenDraft",
    "Propose",
    "Resolve",
    "SpawnNow",
    "WaiterGone",
]

STATUS_OF = {
    "approve": "approved",
    "deny": "denied",
    "answer": "answered",
    "cancel": "cancelled",
    "expire": "expired",
}

Loaded = tuple[list[ApprovalRecord], list[DraftRecord], list[ScheduledPrompt], int]


class ApprovalsActor(QuestionsMixin, RequestsMixin, ScheduledMixin):
    """Everything that waits for the operator's word (module docstring)."""

    # --- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        store = self.ctx.refs.get("store")
        if store is None:
            raise RuntimeError("store is not running")

        def load(q: Queries) -> Loaded:
            return (
                records.pending_approvals(q),
                records.drafts(q),
                records.scheduled(q),
                records.max_approval_id(q),
            )

        pending, drafts, scheduled, max_id = cast(Loaded, store.ask(Read(load)))
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

    # --- dispatch -----------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        match message:
            case InjectFault():
                self.injected(message)
            case Done(then=then, value=value, error=error, commit=commit):
                token = COMPLETING_COMMIT.set(commit)
                try:
                    then(value, error)
                finally:
                    COMPLETING_COMMIT.reset(token)
            case Call(fn=fn):
                fn()
            case Ask():
                self._ask(message)
            case WaiterGone(waiter_id=wid):
                self._waiter_gone(wid)
            case Propose():
                self._propose(message)
            case Resolve():
                self._resolve(message)
            case ListPending():
                self._list_pending(message)
            case ListDrafts(reply=reply):
                self._list_drafts(reply)
            case ListScheduled(reply=reply):
                self._list_scheduled(reply)
            case SpawnNow(config=cfg, reply=reply):
                self._spawn_now(cfg, reply)
            case OpenDraft():
                self._open_draft(message)
            case GetDraft(name=name, reply=reply):
                self._get_draft(name, reply)
            case DiscardDraft(name=name, reply=reply):
                self._discard_draft(name, reply)
            case AgentDestroyed(name=name, reply=reply):
                self._withdraw_questions(name, reply)
            case PromptDue(id=pid):
                self._deliver_prompt(pid)
            case Republish():
                self._republish()
            case _:
                log.warning("approvals: unexpected message %r", message)
        return None

    # --- resolution ---------------------------------------------------------------------

    def _resolve(self, m: Resolve) -> None:
        status = STATUS_OF.get(m.action)
        if status is None:
            answer(m.reply, WireError("bad_request", f"unknown action '{m.action}'"))
            return
        item = self.items.get(m.id)
        if m.action == "expire" and item is None:
            return  # the timer of an item resolved meanwhile
        if m.action == "cancel" and item is None and m.id in self.scheduled:
            self._cancel_prompt(m)
            return
        after: dict[str, Any] = {}  # filled in the transaction, read once it committed
        stored: list[Envelope] = []  # the notices it committed

        def op(q: Queries) -> tuple[str, ApprovalRecord | None, list[Envelope]]:
            outcome = _resolve_in_store(q, m, status, after, self.ctx.message_ids)
            stored.extend(outcome[2])
            return outcome

        def done(value: Any, error: BaseException | None) -> None:
            if error is not None:
                answer(m.reply, WireError("store_failed", f"not resolved: {error}"))
                return
            outcome, rec, envs = value
            if outcome == "won":
                self._resolved(rec, envs, after.get("needs_update"))
                answer(m.reply, rec.to_wire())
            else:
                answer(m.reply, _not_resolved(outcome, rec, m.id))

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
            self._answer_waiters(item, held)
        # Subscribers see the outcome, then the item leaves the pending snapshot.
        self.ctx.refs.tell("hub", Publish(item.hub_kind, str(rec.id), rec.to_wire()))
        self.ctx.refs.tell("hub", Publish(item.hub_kind, str(rec.id), None))
        if needs_update is not None and rec.status != "approved":
            self._tell_agent(rec.agent, configure(needs_update))
        if rec.status != "approved":
            return
        if rec.kind in (*SPAWNS, "apply_commit"):
            self._request_approved(rec)
        elif rec.kind == "schedule_prompt":
            self._prompt_approved(rec)

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


# --- pure helpers (run inside store transactions or on the actor thread) -------------------


def _resolve_in_store(
    q: Queries, m: Resolve, status: str, after: dict[str, Any], ids: IdAllocator
) -> tuple[str, ApprovalRecord | None, list[Envelope]]:
    """The resolving transaction: claim the row (first resolver wins), run an approval's
    action in a savepoint, and store the notices. ``after`` gets what the actor needs once
    it committed (whether an agent still has config changes waiting)."""
    resolution: dict[str, Any] = {"by": m.by}
    if m.action == "answer":
        resolution["answer"] = m.text
    elif m.text:
        resolution["reason"] = m.text
    now = time.time()
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
    notices = question_notice(rec, ids) if rec.is_question else request_notice(rec, ids)
    return "won", rec, [env for env in notices if records.insert_system_message(q, env)]


def _not_resolved(outcome: str, rec: ApprovalRecord | None, qid: int) -> WireError:
    """The error for a resolution that did not happen."""
    if outcome == "missing" or rec is None:
        return WireError("not_found", f"no approval or question #{qid}")
    if outcome == "lost":
        what = "question" if rec.is_question else f"{rec.kind} approval"
        return WireError(
            "already_resolved", f"{what} #{rec.id} was already resolved as {rec.status}"
        )
    return WireError("bad_request", outcome)


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


def _apply(q: Queries, rec: ApprovalRecord) -> None:
    """The database part of an approved action. Raises to fail it."""
    if rec.kind in (*SPAWNS, "apply_commit"):
        apply_request(q, rec)
    elif rec.kind == "schedule_prompt":
        apply_schedule(q, rec)
    else:
        raise ActionFailed(f"approving a {rec.kind} does nothing")
