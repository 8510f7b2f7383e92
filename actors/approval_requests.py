"""The requests-and-drafts part of the Approvals actor: a manager's requests that wait for
the operator (spawn, spawn_commit, apply_commit; schedule_prompt is
hive.actors.scheduled_prompts), the operator's own spawn, and the manager's drafts of new
agents. What an approval does is done in the store transaction that records it; starting
the agent's actor follows the commit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hive.actors.approval_core import (
    ActionFailed,
    ApprovalsCore,
    Call,
    Item,
    answer,
    configure,
    log,
)
from hive.actors.base import Reply, tell_quietly
from hive.actors.hub import Publish
from hive.config import AgentConfig
from hive.control import records, tasks
from hive.control.records import ApprovalRecord, DraftRecord
from hive.store import IdAllocator, Queries
from hive.wire import OPERATOR, SYSTEM, Envelope, WireError

SPAWNS = ("spawn", "spawn_commit")


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
    """The draft ``name`` (not_found until its first commit is made)."""

    name: str
    reply: Reply


@dataclass(frozen=True)
class DiscardDraft:
    """Forget the draft ``name`` (its folder stays on disk)."""

    name: str
    reply: Reply


@dataclass(frozen=True)
class ListDrafts:
    """Every draft, made or being made."""

    reply: Reply


class RequestsMixin(ApprovalsCore):
    """Requests for approval, their approved effects, spawning, and drafts."""

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
            conflict = request_conflict(q, rec)
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
                self._tell_agent(rec.agent, configure(True))
            m.reply({"id": rec.id, "kind": rec.kind, "status": "pending"})

        self._write(op, stored)

    def _request_approved(self, rec: ApprovalRecord) -> None:
        """A spawn or apply_commit approval committed: start or reconfigure the agent."""
        from hive.actors.supervisor import AddAgent

        cfg = AgentConfig.from_dict(rec.details["config"])
        if rec.kind == "apply_commit":
            self.ctx.refs.tell("supervisor", AddAgent(cfg))
            return
        draft_of = None
        if rec.kind == "spawn_commit":
            draft = self.drafts.pop(cfg.name, None)
            draft_of = draft.requested_by if draft is not None else rec.requested_by
            self.ctx.refs.tell("hub", Publish("draft", cfg.name, None))
        self._start_agent(cfg, make_repo=rec.kind == "spawn", reply=None, draft_of=draft_of)

    # --- spawning -----------------------------------------------------------------------

    def _spawn_now(self, cfg: AgentConfig, reply: Reply) -> None:
        def op(q: Queries) -> str | None:
            conflict = name_taken(q, cfg.name, "is waiting for approval")
            if conflict is not None:
                return conflict
            create_agent(q, cfg, "")
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
            tell_quietly(me, Call(lambda: self._prepared(cfg, sha, error, reply)))

        self.ctx.io.spawn(tasks.prepare_agent, self.ctx, cfg, make_repo, prepared, draft_of)

    def _prepared(self, cfg: AgentConfig, sha: str, error: str | None, reply: Reply | None) -> None:
        from hive.actors.supervisor import AddAgent

        if error is not None:
            log.error("agent %s: %s", cfg.name, error)
            answer(reply, WireError("spawn_failed", f"agent '{cfg.name}': {error}"))
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

    def _list_drafts(self, reply: Reply) -> None:
        reply({"drafts": [self._draft_wire(d) for d in self.drafts.values()]})

    def _get_draft(self, name: str, reply: Reply) -> None:
        d = self.drafts.get(name)
        if d is None or not d.base_sha:
            reply(
                WireError(
                    "not_found", f"no draft named '{name}'; create one with request_spawn_draft"
                )
            )
        else:
            reply(self._draft_wire(d))

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

        def reserve(q: Queries) -> str | None:
            if existing is not None:
                return None
            conflict = name_taken(q, m.name, "is waiting for approval")
            if conflict is None:
                records.insert_draft(q, d)
            return conflict

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
            self._make_draft(m, d)

        self._write(reserve, reserved)

    def _make_draft(self, m: OpenDraft, d: DraftRecord) -> None:
        """The draft's folder and first commit, on the IO side."""
        me = self.actor_ref

        def report(sha: str, err: str | None) -> None:
            tell_quietly(me, Call(lambda: self._draft_made(m, d, sha, err)))

        self.ctx.io.spawn(tasks.make_draft, self.ctx, m.name, d.requested_by, m.toml_text, report)

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


# --- pure helpers (run inside store transactions) -------------------------------------------


def name_taken(q: Queries, name: str, pending_says: str) -> str | None:
    """Why a new agent cannot be called ``name`` (an agent or a pending spawn has it)."""
    if records.agent_exists(q, name):
        return f"an agent named '{name}' already exists"
    pending = records.pending_spawn_of(q, name)
    if pending is not None:
        return f"a spawn of '{name}' {pending_says} as #{pending}"
    return None


def request_conflict(q: Queries, rec: ApprovalRecord) -> str | None:
    name = rec.agent
    if rec.kind in SPAWNS:
        conflict = name_taken(q, name, "is already waiting for the operator")
        if conflict is not None:
            return conflict
        if rec.kind == "spawn_commit" and name not in {d.name for d in records.drafts(q)}:
            return f"no draft named '{name}'; create one with request_spawn_draft"
    elif not records.agent_exists(q, name):
        return f"no agent named '{name}'"
    return None


def create_agent(q: Queries, cfg: AgentConfig, sha: str) -> None:
    q.upsert_agent(cfg.name, cfg.parent, cfg.to_dict(), cfg.model)
    # A name used before (destroyed, state kept) starts clean.
    q.set_agent_fields(
        cfg.name, model=cfg.model, paused=0, failed=0, failed_reason="", needs_login=0,
        needs_update=0, stopped=0, deployed_sha=sha, status_text="", status_set_at=None,
    )  # fmt: skip


def apply_request(q: Queries, rec: ApprovalRecord) -> None:
    """The database part of an approved spawn or apply_commit. Raises to fail it."""
    details = rec.details
    cfg = AgentConfig.from_dict(details["config"])
    if rec.kind in SPAWNS:
        if records.agent_exists(q, cfg.name):
            raise ActionFailed(f"an agent named '{cfg.name}' already exists")
        create_agent(q, cfg, str(details.get("sha", "")))
        records.delete_draft(q, cfg.name)
        return
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


def request_notice(rec: ApprovalRecord, ids: IdAllocator) -> list[Envelope]:
    """The requester's word of a resolved request (none for the operator's or hive's own)."""
    if rec.requested_by in ("", OPERATOR, SYSTEM):
        return []
    outcome = "approved but failed" if rec.status == "failed" else rec.status
    body = f"your {rec.kind} request #{rec.id} ({rec.description}) was {outcome}"
    if rec.resolution.get("reason"):
        body += f": {rec.resolution['reason']}"
    if rec.resolution.get("error"):
        body += f": {rec.resolution['error']}"
    return [
        Envelope(
            ids.next(), SYSTEM, rec.requested_by, body, kind="event",
            meta={"approval": rec.id, "kind": rec.kind, "status": rec.status},
        )
    ]  # fmt: skip
