"""Control-plane verbs on the admin socket (registered in hive.io.admin_socket.VERBS).

    pending{agent?}                      approvals and questions waiting, with ttl_remaining
    approve{id}  deny{id, reason?}       resolve an approval (approving runs its action)
    answer{id, answer}                   answer a question
    cancel{id, reason?}                  withdraw an approval, a question or a scheduled
                                         prompt (cancel{names} still cancels running turns)
    approvals{status?, agent?, limit?}   history, newest first
    drafts  scheduled                    the manager's drafts; approved prompts not yet sent
    start{names} stop{names, hard?} restart{names}
    model{names, model?}                 show or set (""/None to show; "default" resets)
    spawn{name, model?, prompt?, runtime?, sandbox?, parent?, config?}
    destroy{names, purge?}               remove agents (or drafts); state kept unless purge
    logs{name, lines?}                   the end of the agent's own log file

Lifecycle verbs act on named agents only: an empty scope is an error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hive import safefs
from hive.control import records
from hive.control.calls import ask_actor
from hive.control.spawn import spawn_config
from hive.control.tasks import paths_of, remove_draft_repo
from hive.io.admin_socket import VERBS, AdminSocket, scope_names, verb
from hive.logtail import tail_lines
from hive.wire import (
    OPERATOR,
    Request,
    WireError,
    arg,
    check_since,
    id_arg,
    limit_arg,
    validate_agent_name,
)

if TYPE_CHECKING:
    from hive.io.frames import Connection

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]{0,127}$")
MODEL_FILE = "hive-model"
MAX_LOG_LINES = 5000


# --- approvals and questions --------------------------------------------------------------


@verb("pending")
def _pending(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.approvals import ListPending

    agent = arg(req.args, "agent", str, None)
    s.tell("approvals", ListPending(s.reply_cb(conn, req), agent))


def _resolver(action: str, text_key: str | None, required: bool = False) -> Any:
    def run(s: AdminSocket, conn: Connection, req: Request) -> None:
        from hive.actors.approvals import Resolve

        item_id = id_arg(req.args, "id")
        text = ""
        if text_key is not None:
            text = arg(req.args, text_key, str) if required else arg(req.args, text_key, str, "")
        s.tell("approvals", Resolve(item_id, action, OPERATOR, text, reply=s.reply_cb(conn, req)))

    return run


VERBS["approve"] = _resolver("approve", None)
VERBS["deny"] = _resolver("deny", "reason")
VERBS["answer"] = _resolver("answer", "answer", required=True)

_cancel_turns = VERBS["cancel"]
_cancel_item = _resolver("cancel", "reason")


@verb("cancel")
def _cancel(s: AdminSocket, conn: Connection, req: Request) -> Any:
    """cancel{id}: withdraw an approval/question/scheduled prompt; cancel{names}: turns."""
    if "id" in req.args:
        return _cancel_item(s, conn, req)
    return _cancel_turns(s, conn, req)


@verb("approvals")
async def _approvals(s: AdminSocket, conn: Connection, req: Request) -> None:
    status = arg(req.args, "status", str, None)
    if status is not None and status not in records.STATUSES:
        raise WireError("bad_request", f"status must be one of {', '.join(records.STATUSES)}")
    agent = arg(req.args, "agent", str, None)
    limit = limit_arg(req.args, "limit", 100, 1000)
    rows = await s.reader.run(lambda q: records.approvals(q, status, agent, limit))
    conn.reply(req.id, {"approvals": [r.to_wire() for r in rows]})


@verb("drafts")
def _drafts(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.approvals import ListDrafts

    s.tell("approvals", ListDrafts(s.reply_cb(conn, req)))


@verb("scheduled")
def _scheduled(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.approvals import ListScheduled

    s.tell("approvals", ListScheduled(s.reply_cb(conn, req)))


# --- lifecycle ----------------------------------------------------------------------------


def _lifecycle(op_name: str) -> Any:
    def run(s: AdminSocket, conn: Connection, req: Request) -> None:
        from hive.actors.agent import Control

        op = op_name
        if op == "stop" and arg(req.args, "hard", bool, False):
            op = "stop_hard"
        s.fan_out(conn, req, scope_names(req), lambda cb: Control(op, cb))

    return run


for _name in ("start", "stop", "restart"):
    VERBS[_name] = _lifecycle(_name)


def _names(req: Request) -> list[str]:
    if "name" in req.args and "names" not in req.args:
        return [validate_agent_name(arg(req.args, "name", str))]
    return scope_names(req)


@verb("model")
async def _model(s: AdminSocket, conn: Connection, req: Request) -> None:
    """Show (no model) or set each named agent's model. "default" goes back to the model
    in the agent's config. Set models are kept in the store and in the agent's state dir
    (``hive-model``), and used from the agent's next turn."""
    from hive.actors.agent import Configure
    from hive.actors.hub import GetSnapshot

    names = _names(req)
    model = arg(req.args, "model", str, "")
    for name in names:
        if s.ctx.refs.get(s.ctx.agent_ref_name(name)) is None:
            raise WireError("unknown_agent", f"no agent named '{name}'")
    if not model:
        snap = await ask_actor(s.ctx, "hub", lambda r: GetSnapshot(r, frozenset({"agent"})))
        rows = {row["name"]: row for row in snap["items"].get("agent", [])}
        conn.reply(
            req.id, {"agents": {n: {"model": rows.get(n, {}).get("active_model")} for n in names}}
        )
        return
    if model != "default" and not MODEL_RE.match(model):
        raise WireError(
            "bad_request",
            f"invalid model name {model!r}: letters, digits and ._:/@+-[] only, up to 128",
        )
    value = "" if model == "default" else model
    out: dict[str, Any] = {}
    for name in names:
        result = await ask_actor(
            s.ctx, s.ctx.agent_ref_name(name), lambda r: Configure(model=value, reply=r)
        )
        paths = paths_of(s.ctx, name)
        file = paths.state / MODEL_FILE
        try:
            await trio.to_thread.run_sync(_write_model_file, paths.root, value)
        except OSError as exc:
            raise WireError(
                "unsafe_path",
                f"model of '{name}' set, but {file} was not written: {exc.strerror or exc} "
                f"(a link or a non-directory where a directory belongs)",
            ) from None
        out[name] = {"model": result["model"], "file": str(file)}
    conn.reply(req.id, {"agents": out})


def _write_model_file(root: Path, model: str) -> None:
    # The agent owns state/: walk it without following links, so a planted link makes the
    # write fail or replaces the link itself, never writes through it.
    relative = Path("state") / MODEL_FILE
    if not model:
        safefs.unlink(root, relative)
        return
    safefs.write_text_atomic(root, relative, model + "\n")


# --- spawn and destroy --------------------------------------------------------------------

_SPAWN_KEYS = ("model", "prompt", "runtime", "sandbox", "parent")


@verb("spawn")
async def _spawn(s: AdminSocket, conn: Connection, req: Request) -> None:
    """The operator's spawn: created at once (the operator is the approver)."""
    from hive.actors.approvals import SpawnNow

    name = validate_agent_name(arg(req.args, "name", str))
    overrides: dict[str, Any] = dict(arg(req.args, "config", dict, {}))
    for key in _SPAWN_KEYS:
        value = arg(req.args, key, str, None)
        if value:
            overrides[key] = value
    parent = str(overrides.pop("parent", ""))
    template = await s.reader.run(lambda q: records.agent_config(q, parent)) if parent else None
    cfg = spawn_config(name, parent, overrides, template)
    result = await ask_actor(s.ctx, "approvals", lambda r: SpawnNow(cfg, r))
    conn.reply(req.id, {**result, "config": cfg.to_dict()})


@verb("destroy")
async def _destroy(s: AdminSocket, conn: Connection, req: Request) -> None:
    """Remove agents (or discard drafts). Their state dirs are kept unless ``purge``."""
    from hive.actors.approvals import AgentDestroyed, DiscardDraft
    from hive.actors.supervisor import RemoveAgent

    names = scope_names(req)
    purge = arg(req.args, "purge", bool, False)
    drafts = await ask_actor(s.ctx, "approvals", _list_drafts)
    draft_owners = {d["name"]: d["requested_by"] for d in drafts["drafts"]}
    draft_names = set(draft_owners)
    for name in names:
        if s.ctx.refs.get(s.ctx.agent_ref_name(name)) is None and name not in draft_names:
            raise WireError("unknown_agent", f"no agent or draft named '{name}'")
    out: dict[str, Any] = {}
    for name in names:
        if s.ctx.refs.get(s.ctx.agent_ref_name(name)) is not None:
            # Its askers are answered first, while their connections are still open.
            await ask_actor(s.ctx, "approvals", partial(_remove, AgentDestroyed, name))
            await ask_actor(s.ctx, "supervisor", partial(_remove, RemoveAgent, name))
            out[name] = {"destroyed": True}
        else:
            await ask_actor(s.ctx, "approvals", partial(_remove, DiscardDraft, name))
            out[name] = {"draft_discarded": True}
        root = paths_of(s.ctx, name).root
        if purge:
            await trio.to_thread.run_sync(_purge, root)
            if name in draft_owners:  # its repo, in the manager's own dir
                owner_root = paths_of(s.ctx, draft_owners[name]).root
                await trio.to_thread.run_sync(remove_draft_repo, owner_root, name)
        out[name].update(state_dir=str(root), purged=purge)
    conn.reply(req.id, {"agents": out})


def _remove(kind: Callable[[str, Any], object], name: str, reply: Any) -> object:
    return kind(name, reply)


def _list_drafts(reply: Any) -> object:
    from hive.actors.approvals import ListDrafts

    return ListDrafts(reply)


def _purge(root: Path) -> None:
    # By descriptor, any depth (the agent chose how deep its tree is), no link followed.
    safefs.remove_tree(root.parent, root.name)


# --- logs ---------------------------------------------------------------------------------


@verb("logs")
async def _logs(s: AdminSocket, conn: Connection, req: Request) -> None:
    """The last ``lines`` lines of the agent's log (its turns' stderr, as the supervisor
    writes it to <state>/agents/<name>/agent.log)."""
    name = validate_agent_name(arg(req.args, "name", str))
    lines = max(1, min(int(arg(req.args, "lines", int, 100)), MAX_LOG_LINES))
    path = paths_of(s.ctx, name).log
    if not path.parent.exists():
        raise WireError("unknown_agent", f"no agent named '{name}' (no directory {path.parent})")
    text, _ = await trio.to_thread.run_sync(tail_lines, path, lines)
    conn.reply(req.id, {"agent": name, "path": str(path), "lines": text})


@verb("stats")
async def _stats(s: AdminSocket, conn: Connection, req: Request) -> None:
    """stats{agent, since?}: the telemetry summary of SEED.md item 15 over the window
    (``since``: unix seconds, or negative for seconds ago; default the last hour)."""
    from hive.telemetry import select_stats, summarize

    name = validate_agent_name(arg(req.args, "agent", str))
    now = time.time()
    since = float(arg(req.args, "since", float, -3600.0))
    since = check_since(since, now)
    rows = await s.reader.run(lambda q: select_stats(q, name, since, []))
    conn.reply(req.id, {"agent": name, "since": since, "summary": summarize(rows, since, now)})
