"""The questions part of the Approvals actor: an agent's ``ask_operator``.

The asker's reply is held (not polled) until the question is resolved; a question asked
again while pending waits on the same question; each agent has at most
``MAX_OPEN_QUESTIONS`` open; a question with a time limit expires (never "denied").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hive.actors.approval_core import ApprovalsCore, Item, Resolve, answer
from hive.actors.base import Reply, tell_quietly
from hive.control import records
from hive.control.records import QUESTION, ApprovalRecord
from hive.store import IdAllocator
from hive.wire import SYSTEM, Envelope, WireError

MAX_QUESTION_TTL = 7 * 86400.0
MAX_OPEN_QUESTIONS = 20  # per agent: a looping agent cannot bury the operator


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
class AgentDestroyed:
    """Withdraw the agent's pending questions (it is being destroyed); replies
    ``{"cancelled": [ids]}`` once that is committed and the askers are answered."""

    name: str
    reply: Reply | None = None


@dataclass(frozen=True)
class ListPending:
    """The committed pending approvals and questions (of one agent, or all)."""

    reply: Reply
    agent: str | None = None


class QuestionsMixin(ApprovalsCore):
    """Asking, joining, withdrawing and expiring questions; answering their held replies."""

    def _ask(self, m: Ask) -> None:
        if self._join_pending(m):
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
        rec = _question_record(self.ids.next(), m)
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

    def _join_pending(self, m: Ask) -> bool:
        """Wait on the same pending question, if the agent asked it already.

        Same means text, options and TTL: joining a question of another TTL would wait past
        the asker's, or give up before the first asker's."""
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
                return True
        return False

    def _waiter_gone(self, wid: int) -> None:
        qid = self.waiter_index.pop(wid, None)
        item = self.items.get(qid) if qid is not None else None
        if item is not None:
            item.waiters.pop(wid, None)

    def _list_pending(self, m: ListPending) -> None:
        now = time.time()
        rows = [
            {**i.rec.to_wire(now), "waiting": len(i.waiters)}
            for i in sorted(self.items.values(), key=lambda i: i.rec.id)
            if i.committed and (m.agent is None or i.rec.agent == m.agent)
        ]
        m.reply({"pending": rows})

    def _withdraw_questions(self, name: str, reply: Reply | None) -> None:
        ids = [
            i.rec.id
            for i in self.items.values()
            if i.rec.is_question and i.rec.agent == name and i.committed
        ]
        left = set(ids)
        if not ids:
            answer(reply, {"cancelled": []})

        def one_done(qid: int) -> Reply:
            def done(_: Any) -> None:  # resolved, or lost to another resolver: either way
                left.discard(qid)
                if not left:
                    answer(reply, {"cancelled": ids})

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

    def _answer_waiters(self, item: Item, held: list[int]) -> None:
        """A resolved question: every held reply gets its outcome (``held``: the ids of
        its inbox copies, which the asker acknowledges with the reply)."""
        rec = item.rec
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


def _question_record(qid: int, m: Ask) -> ApprovalRecord:
    now = time.time()
    return ApprovalRecord(
        id=qid,
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


def question_notice(rec: ApprovalRecord, ids: IdAllocator) -> list[Envelope]:
    """The asker's inbox copy of a question's outcome, sent in the resolving transaction.

    It is sent even when the asker holds a reply for it: the held reply may never reach the
    asker (a closed connection, a crash before it was written), and the inbox is the one
    place that survives both. The asker acknowledges the held reply, which marks the inbox
    copy delivered; unacknowledged, it is delivered like any other message. (An asker who
    cancelled its own question needs no word.)"""
    if rec.resolution.get("by") == rec.agent:
        return []
    result = {"id": rec.id, "status": rec.status, **rec.resolution}
    return [
        Envelope(
            ids.next(), SYSTEM, rec.agent, outcome_text(result), kind="event",
            meta={"question": rec.id, "status": rec.status},
        )
    ]  # fmt: skip


def outcome_text(result: dict[str, Any]) -> str:
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
