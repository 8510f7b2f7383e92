"""The scheduled-prompts part of the Approvals actor: a prompt the operator approved is
delivered to its agent at its time, once, as a system message; until then the operator may
cancel it (an agent may not)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hive.actors.approval_core import ActionFailed, ApprovalsCore, Resolve, answer, log
from hive.actors.base import Reply, tell_quietly
from hive.actors.hub import Publish
from hive.control import records
from hive.control.records import ApprovalRecord, ScheduledPrompt
from hive.store import Queries
from hive.wire import SYSTEM, Envelope, WireError

RETRY_SECONDS = 5.0  # a delivery the store could not commit is tried again after this


@dataclass(frozen=True)
class ListScheduled:
    """The approved prompts still waiting for their time, soonest first."""

    reply: Reply


@dataclass(frozen=True)
class PromptDue:
    """A scheduled prompt's time has come."""

    id: int


class ScheduledMixin(ApprovalsCore):
    """Arming, delivering and cancelling approved scheduled prompts."""

    def _list_scheduled(self, reply: Reply) -> None:
        due = sorted(self.scheduled.values(), key=lambda sp: sp.at)
        reply({"scheduled": [sp.to_wire() for sp in due]})

    def _prompt_approved(self, rec: ApprovalRecord) -> None:
        """Its approval committed (with the prompt's row): wait for its time."""
        sp = prompt_of(rec)
        self.scheduled[sp.id] = sp
        self._arm_prompt(sp)
        self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))

    def _arm_prompt(self, sp: ScheduledPrompt, delay: float | None = None) -> None:
        me = self.actor_ref
        wait = sp.at - time.time() if delay is None else delay
        self.ctx.io.call_later(wait, lambda: tell_quietly(me, PromptDue(sp.id)))

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

        stored: list[Envelope] = []  # the prompt, once op has stored it

        def op(q: Queries) -> str:
            if not records.agent_exists(q, sp.agent):
                records.finish_scheduled(q, sp.id, "failed", None, "the agent no longer exists")
                return "failed"
            if not records.finish_scheduled(q, sp.id, "delivered", env.id):
                return "gone"
            q.insert_messages([env])
            stored.append(env)
            return "delivered"

        def done(state: str | None, error: BaseException | None) -> None:
            if error is not None:
                log.error("scheduled prompt #%s not delivered: %s; retrying", sp.id, error)
                self._arm_prompt(sp, RETRY_SECONDS)
                return
            self.scheduled.pop(sp.id, None)
            sp.state = str(state)
            if state == "delivered":
                sp.message_id, sp.done_at = env.id, time.time()
                self._deliver([env])
            self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))

        self._write(op, done, mail=stored)

    def _cancel_prompt(self, m: Resolve) -> None:
        sp = self.scheduled[m.id]
        if m.owner is not None:
            answer(m.reply, WireError("not_allowed", "an agent cannot cancel scheduled prompts"))
            return

        def done(changed: bool, error: BaseException | None) -> None:
            if error is not None:
                answer(m.reply, WireError("store_failed", f"not cancelled: {error}"))
            elif not changed:
                answer(
                    m.reply,
                    WireError("already_resolved", f"scheduled prompt #{m.id} was already sent"),
                )
            else:
                self.scheduled.pop(m.id, None)
                sp.state = "cancelled"
                self.ctx.refs.tell("hub", Publish("scheduled_prompt", str(sp.id), sp.to_wire()))
                answer(m.reply, sp.to_wire())

        self._write(lambda q: records.finish_scheduled(q, m.id, "cancelled", None, m.by), done)


def prompt_of(rec: ApprovalRecord) -> ScheduledPrompt:
    """The scheduled prompt a schedule_prompt approval describes."""
    details = rec.details
    return ScheduledPrompt(
        rec.id, rec.agent, float(details["at"]), str(details["text"]), rec.requested_by
    )


def apply_schedule(q: Queries, rec: ApprovalRecord) -> None:
    """The database part of approving a scheduled prompt. Raises ActionFailed to fail it."""
    if not records.agent_exists(q, rec.agent):
        raise ActionFailed(f"agent '{rec.agent}' no longer exists")
    records.insert_scheduled(q, prompt_of(rec))


__all__ = ["ListScheduled", "PromptDue", "ScheduledMixin", "apply_schedule", "prompt_of"]
