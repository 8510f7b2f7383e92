"""Every admin verb, and their table (``verb_table``): what hivectl (through the admin
socket) and the dashboard (in process) call, through ``hive.control.admin_api.AdminApi``.

    version  list  status{name}  send{to, body}  kick{names, note?}
    pause resume reset cancel{names}               lifecycle of running agents
    messages{agent, limit?}  turns{agent, limit?}  transcript{turn_id}  events{agent?}
    login_info  clear_mail{sender?, before_id?}
    pending{agent?}                      approvals and questions waiting, with ttl_remaining
    approve{id}  deny{id, reason?}       resolve an approval (approving runs its action)
    answer{id, answer}                   answer a question
    cancel{id, reason?}                  withdraw an approval, a question or a scheduled
                                         prompt (cancel{names} still cancels running turns)
    approvals{status?, agent?, limit?}   history, newest first
    drafts  scheduled                    the manager's drafts; approved prompts not yet sent
    start{names} stop{names, hard?} restart{names}
    model{names, model?, force?}         show or set (""/None to show; "default" resets);
                                         a model not in [hive] models needs force
    spawn{name, model?, prompt?, runtime?, sandbox?, parent?, config?}
    destroy{names, purge?}               remove agents (or drafts); state kept unless purge
    logs{name, lines?, after?}  stats{agent, since?}
    cost{agent?}                         spend today / 7 days per agent, model and day
    inbox{state?, severity?, agent?, kind?, limit?, offset?}   the attention inbox
    inbox_mark{state, ids? | all, ...filter}                 move items to new/seen/done
    inject_fault{target, hang_seconds?}  only with HIVE_FAULT_INJECTION=1 (tests)

(``subscribe`` pushes on its connection, so it lives with the socket: hive.io.admin_socket.)
Each verb takes the hive context and the request and returns the reply or raises a
WireError. Lifecycle verbs act on named agents only: an empty scope is an error.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hive import __version__, logtail, safefs
from hive.actors import agent as agent_msgs
from hive.config import stored_agent_config
from hive.control import privilege, records
from hive.control.calls import ask_actor
from hive.control.spawn import spawn_config
from hive.control.tasks import paths_of, remove_draft_repo
from hive.wire import (
    OPERATOR,
    PROTOCOL_VERSION,
    SYSTEM,
    Request,
    WireError,
    arg,
    check_since,
    id_arg,
    limit_arg,
    validate_agent_name,
    validate_recipient,
)

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.control.admin_api import Verb

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]{0,127}$")
MODEL_FILE = "hive-model"
MAX_LOG_LINES = 5000


def check_model_name(model: str) -> str:
    """The one rule for a model name (the dashboard and hivectl both end up here)."""
    if not MODEL_RE.match(model):
        raise WireError(
            "bad_request",
            f"invalid model name {model!r}: letters, digits and ._:/@+-[] only, up to 128",
        )
    return model


# --- helpers ------------------------------------------------------------------------------


def scope_names(req: Request) -> list[str]:
    """The agents a lifecycle verb acts on: named explicitly, never 'all' by omission."""
    names = req.args.get("names")
    if isinstance(names, str):
        names = [names] if names else []
    if not isinstance(names, list) or not names:
        raise WireError(
            "empty_scope",
            f"'{req.op}' needs at least one agent name; an empty scope never means every agent",
        )
    return [validate_agent_name(n) for n in names]


def _known(ctx: HiveContext, names: list[str]) -> None:
    for name in names:
        if ctx.refs.get(ctx.agent_ref_name(name)) is None:
            raise WireError("unknown_agent", f"no agent named '{name}'")


async def fan_out(
    ctx: HiveContext, names: list[str], make: Callable[[Any], object]
) -> dict[str, Any]:
    """One message per named agent; every agent's result (an error as ``{"error": ...}``).

    No time limit: stop and restart answer once the running turn has ended."""
    _known(ctx, names)
    results: dict[str, Any] = {}

    async def one(name: str) -> None:
        try:
            results[name] = await ask_actor(ctx, ctx.agent_ref_name(name), make, math.inf)
        except WireError as exc:
            results[name] = {"error": exc.to_wire()}

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return {"agents": {name: results[name] for name in names}}


# --- the hive and its agents --------------------------------------------------------------


async def version(ctx: HiveContext, req: Request) -> Any:
    return {"version": __version__, "protocol": PROTOCOL_VERSION}


async def _agent_rows(ctx: HiveContext) -> tuple[list[dict[str, Any]], int]:
    from hive.actors.hub import GetSnapshot

    snap = await ask_actor(ctx, "hub", lambda r: GetSnapshot(r, frozenset({"agent"})))
    rows = sorted(snap["items"].get("agent", []), key=lambda r: r["name"])
    return rows, snap["seq"]


async def list_agents(ctx: HiveContext, req: Request) -> Any:
    rows, seq = await _agent_rows(ctx)
    return {"agents": rows, "seq": seq}


async def status(ctx: HiveContext, req: Request) -> Any:
    name = validate_agent_name(arg(req.args, "name", str))
    for row in (await _agent_rows(ctx))[0]:
        if row["name"] == name:
            return row
    raise WireError("unknown_agent", f"no agent named '{name}'")


async def send(ctx: HiveContext, req: Request) -> Any:
    from hive.actors.bus import Send

    to = validate_recipient(arg(req.args, "to", str))
    body = arg(req.args, "body", str)
    return await ask_actor(ctx, "bus", lambda r: Send(OPERATOR, to, body, reply=r), math.inf)


async def kick(ctx: HiveContext, req: Request) -> Any:
    from hive.actors.agent import Kick

    note = arg(req.args, "note", str, "")
    return await fan_out(ctx, scope_names(req), lambda r: Kick(note or None, r))


def _control_verb(kind: Callable[..., object]) -> Verb:
    """A lifecycle verb: the agent message ``kind`` (Pause, Resume, ...) to each named agent."""

    async def run(ctx: HiveContext, req: Request) -> Any:
        return await fan_out(ctx, scope_names(req), lambda r: kind(reply=r))

    return run


async def messages(ctx: HiveContext, req: Request) -> Any:
    agent = arg(req.args, "agent", str)
    if agent != OPERATOR:
        validate_agent_name(agent)
    limit = limit_arg(req.args, "limit", 100, 1000)
    return {"messages": await ctx.services.reader.run(lambda q: q.messages(agent, limit))}


async def turns(ctx: HiveContext, req: Request) -> Any:
    agent = validate_agent_name(arg(req.args, "agent", str))
    limit = limit_arg(req.args, "limit", 50, 1000)
    before = id_arg(req.args, "before") if req.args.get("before") is not None else None
    return {"turns": await ctx.services.reader.run(lambda q: q.turns(agent, limit, before))}


async def transcript(ctx: HiveContext, req: Request) -> Any:
    turn_id = id_arg(req.args, "turn_id")
    return {"events": await ctx.services.reader.run(lambda q: q.turn_events(turn_id))}


async def events(ctx: HiveContext, req: Request) -> Any:
    agent = req.args.get("agent")
    limit = limit_arg(req.args, "limit", 100, 1000)
    rows = await ctx.services.reader.run(
        lambda q: q.events(agent if isinstance(agent, str) else None, limit)
    )
    return {"events": rows}


async def login_info(ctx: HiveContext, req: Request) -> Any:
    """What `hivectl login NAME` needs to run the agent's login on the operator's terminal:
    where the hive keeps its state, and which CLI it runs."""
    cfg = ctx.config
    return {
        "state_dir": str(cfg.state_dir),
        "run_dir": str(cfg.sockets_dir),
        "claude_bin": cfg.claude_bin,
        "agent_python": cfg.agent_python,
    }


async def clear_mail(ctx: HiveContext, req: Request) -> Any:
    """Delete the operator's mail (all, from one sender, or below an id): the way to make
    room when agents hear ``mailbox_full``. Replies once the delete has committed."""
    from hive.actors.store import Write
    from hive.store.retention import MailCount, clear_operator_mail

    sender: str | None = arg(req.args, "sender", str, None)
    if sender is not None and sender != SYSTEM:
        validate_agent_name(sender)
    before_id: int | None = arg(req.args, "before_id", int, None)
    if before_id is not None and not 0 <= before_id < 2**63:
        raise WireError("bad_request", "'before_id' must be a message id (0 to 2^63-1)")
    mailbox = ctx.operator_mailbox

    def done(reply: Any, gone: MailCount | None, error: BaseException | None) -> None:
        if gone is None:
            reply(WireError("store_failed", f"nothing was deleted: {error}"))
            return
        if mailbox is not None:
            mailbox.removed(gone)
        reply({"deleted": gone.total()[0]})

    def write(reply: Any) -> object:
        return Write(lambda q: clear_operator_mail(q, sender, before_id), partial(done, reply))

    return await ask_actor(ctx, "store", write, math.inf)


MAX_INJECTED_HANG = 600.0  # a test's hang ends by itself, even if nothing kills the daemon


async def inject_fault(ctx: HiveContext, req: Request) -> Any:
    """Make the named actor ('store', 'bus', 'hub', 'agent:NAME') raise in its thread, or
    with ``hang_seconds`` block its thread that long (the watchdog's test)."""
    from hive.actors.base import InjectFault

    target = arg(req.args, "target", str)
    hang = arg(req.args, "hang_seconds", float, 0.0)
    if not 0 <= hang <= MAX_INJECTED_HANG:
        raise WireError("bad_request", f"hang_seconds must be 0..{MAX_INJECTED_HANG:g}")
    if not ctx.refs.tell(target, InjectFault(hang_seconds=hang)):
        raise WireError("unavailable", f"{target} is not running")
    return {"injected": target, "hang_seconds": hang}


# --- approvals and questions --------------------------------------------------------------


async def pending(ctx: HiveContext, req: Request) -> Any:
    from hive.actors.approvals import ListPending

    agent = arg(req.args, "agent", str, None)
    return await ask_actor(ctx, "approvals", lambda r: ListPending(r, agent), math.inf)


def _resolver(action: str, text_key: str | None, required: bool = False) -> Verb:
    async def run(ctx: HiveContext, req: Request) -> Any:
        from hive.actors.approvals import Resolve

        item_id = id_arg(req.args, "id")
        text = ""
        if text_key is not None:
            text = arg(req.args, text_key, str) if required else arg(req.args, text_key, str, "")
        return await ask_actor(
            ctx, "approvals", lambda r: Resolve(item_id, action, OPERATOR, text, reply=r), math.inf
        )

    return run


_resolve_approve = _resolver("approve", None)


async def approve(ctx: HiveContext, req: Request) -> Any:
    """Approve an item. A spawn or config change puts an agent in a sandbox: a caller who
    is not root may approve only the sandboxes ``operator_sandboxes`` allows."""
    item_id = id_arg(req.args, "id")
    rec = await ctx.services.reader.run(lambda q: records.get_approval(q, item_id))
    if rec is None:  # not committed: the Approvals actor could not resolve it either
        raise WireError("not_found", f"no approval or question #{item_id}")
    config = rec.details.get("config") if rec.status == "pending" else None
    if isinstance(config, dict):
        doing = f"approving {rec.kind} #{item_id}"
        await privilege.check_stored_config(ctx.config, config, req.peer_uid, doing)
    return await _resolve_approve(ctx, req)


_cancel_turns = _control_verb(agent_msgs.CancelTurn)
_cancel_item = _resolver("cancel", "reason")


async def cancel(ctx: HiveContext, req: Request) -> Any:
    """cancel{id}: withdraw an approval/question/scheduled prompt; cancel{names}: turns."""
    if "id" in req.args:
        return await _cancel_item(ctx, req)
    return await _cancel_turns(ctx, req)


async def approvals(ctx: HiveContext, req: Request) -> Any:
    status = arg(req.args, "status", str, None)
    if status is not None and status not in records.STATUSES:
        raise WireError("bad_request", f"status must be one of {', '.join(records.STATUSES)}")
    agent = arg(req.args, "agent", str, None)
    limit = limit_arg(req.args, "limit", 100, 1000)
    rows = await ctx.services.reader.run(lambda q: records.approvals(q, status, agent, limit))
    return {"approvals": [r.to_wire() for r in rows]}


async def drafts(ctx: HiveContext, req: Request) -> Any:
    return await ask_actor(ctx, "approvals", _list_drafts, math.inf)


async def scheduled(ctx: HiveContext, req: Request) -> Any:
    from hive.actors.approvals import ListScheduled

    return await ask_actor(ctx, "approvals", ListScheduled, math.inf)


# --- lifecycle ----------------------------------------------------------------------------


async def stop(ctx: HiveContext, req: Request) -> Any:
    hard = arg(req.args, "hard", bool, False)
    return await fan_out(ctx, scope_names(req), lambda r: agent_msgs.Stop(hard, r))


def _names(req: Request) -> list[str]:
    if "name" in req.args and "names" not in req.args:
        return [validate_agent_name(arg(req.args, "name", str))]
    return scope_names(req)


async def model(ctx: HiveContext, req: Request) -> Any:
    """Show (no model) or set each named agent's model. "default" goes back to the model
    in the agent's config. Set models are kept in the store and in the agent's state dir
    (``hive-model``), and used from the agent's next turn."""
    from hive.actors.agent import Configure

    names = _names(req)
    name_of_model = arg(req.args, "model", str, "")
    _known(ctx, names)
    if not name_of_model:
        rows = {row["name"]: row for row in (await _agent_rows(ctx))[0]}
        return {"agents": {n: {"model": rows.get(n, {}).get("active_model")} for n in names}}
    if name_of_model != "default":
        check_model_name(name_of_model)
        known = ctx.config.known_models()
        if not arg(req.args, "force", bool, False) and name_of_model not in known:
            raise WireError(
                "unknown_model",
                f"'{name_of_model}' is not a model this hive knows ({', '.join(known)}); "
                "list it in [hive] models, or force it (hivectl model NAME MODEL --force)",
            )
    value = "" if name_of_model == "default" else name_of_model
    out: dict[str, Any] = {}
    for name in names:
        result = await ask_actor(
            ctx, ctx.agent_ref_name(name), lambda r: Configure(model=value, reply=r)
        )
        paths = paths_of(ctx, name)
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
    return {"agents": out}


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


async def spawn(ctx: HiveContext, req: Request) -> Any:
    """The operator's spawn: created at once (the operator is the approver)."""
    from hive.actors.approvals import SpawnNow

    name = validate_agent_name(arg(req.args, "name", str))
    overrides: dict[str, Any] = dict(arg(req.args, "config", dict, {}))
    for key in _SPAWN_KEYS:
        value = arg(req.args, key, str, None)
        if value:
            overrides[key] = value
    parent = str(overrides.pop("parent", ""))
    template = (
        await ctx.services.reader.run(lambda q: records.agent_config(q, parent)) if parent else None
    )
    cfg = spawn_config(name, parent, overrides, template)
    await privilege.check_config(ctx.config, cfg, req.peer_uid, f"spawn of '{name}'")
    result = await ask_actor(ctx, "approvals", lambda r: SpawnNow(cfg, r))
    return {**result, "config": cfg.to_dict()}


async def destroy(ctx: HiveContext, req: Request) -> Any:
    """Remove agents (or discard drafts). Their state dirs are kept unless ``purge``."""
    from hive.actors.approvals import DiscardDraft
    from hive.actors.supervisor import DestroyAgent

    names = scope_names(req)
    purge = arg(req.args, "purge", bool, False)
    drafts = await ask_actor(ctx, "approvals", _list_drafts)
    draft_owners = {d["name"]: d["requested_by"] for d in drafts["drafts"]}
    draft_names = set(draft_owners)
    for name in names:
        if ctx.refs.get(ctx.agent_ref_name(name)) is None and name not in draft_names:
            raise WireError("unknown_agent", f"no agent or draft named '{name}'")
    out: dict[str, Any] = {}
    for name in names:
        if ctx.refs.get(ctx.agent_ref_name(name)) is not None:
            # The Supervisor orders it (askers answered, then the agent removed).
            await ask_actor(ctx, "supervisor", partial(_remove, DestroyAgent, name))
            out[name] = {"destroyed": True}
        else:
            await ask_actor(ctx, "approvals", partial(_remove, DiscardDraft, name))
            out[name] = {"draft_discarded": True}
        root = paths_of(ctx, name).root
        if purge:
            await trio.to_thread.run_sync(_purge, root)
            if name in draft_owners:  # its repo, in the manager's own dir
                owner_root = paths_of(ctx, draft_owners[name]).root
                await trio.to_thread.run_sync(remove_draft_repo, owner_root, name)
        out[name].update(state_dir=str(root), purged=purge)
    return {"agents": out}


def _remove(kind: Callable[[str, Any], object], name: str, reply: Any) -> object:
    return kind(name, reply)


def _list_drafts(reply: Any) -> object:
    from hive.actors.approvals import ListDrafts

    return ListDrafts(reply)


def _purge(root: Path) -> None:
    # By descriptor, any depth (the agent chose how deep its tree is), no link followed.
    safefs.remove_tree(root.parent, root.name)


# --- logs ---------------------------------------------------------------------------------


async def logs(ctx: HiveContext, req: Request) -> Any:
    """logs{name, lines?, after?}: the last ``lines`` lines of the agent's log, or the next
    ``lines`` after the cursor ``after`` (to follow it), as hive.logtail reads them for
    every viewer: ``{agent, source: journald|file, lines, cursor, more, path?}``."""
    name = validate_agent_name(arg(req.args, "name", str))
    lines = max(1, min(int(arg(req.args, "lines", int, 100)), MAX_LOG_LINES))
    after = arg(req.args, "after", str, "")
    path = paths_of(ctx, name).log
    if not path.parent.exists():
        raise WireError("unknown_agent", f"no agent named '{name}' (no directory {path.parent})")
    try:
        page = await logtail.read(name, path, lines, after)
    except logtail.LogError as exc:
        raise WireError(exc.code, str(exc)) from None
    return {"agent": name, **page}


async def stats(ctx: HiveContext, req: Request) -> Any:
    """stats{agent, since?}: the telemetry summary of SEED.md item 15 over the window
    (``since``: unix seconds, or negative for seconds ago; default the last hour)."""
    from hive.telemetry import select_stats, summarize

    name = validate_agent_name(arg(req.args, "agent", str))
    now = time.time()
    since = float(arg(req.args, "since", float, -3600.0))
    since = check_since(since, now)
    rows = await ctx.services.reader.run(lambda q: select_stats(q, name, since, []))
    spent = await _cost_of(ctx, name, now)
    return {"agent": name, "since": since, "summary": summarize(rows, since, now), "cost": spent}


async def _cost_of(ctx: HiveContext, agent: str | None, now: float) -> Any:
    from hive.spend import summary

    return await ctx.services.reader.run(lambda q: summary(q, now, agent))


async def cost(ctx: HiveContext, req: Request) -> Any:
    """cost{agent?}: what turns cost (the runtime's usage reports): today and over 7 days,
    per agent, per model and per day, with the daily budgets that apply (hive.spend)."""
    agent = arg(req.args, "agent", str, None)
    if agent:
        validate_agent_name(agent)
    spent = await _cost_of(ctx, agent or None, time.time())
    cfg = ctx.config
    # Every agent's settings as the store holds them: hive.toml's and the spawned ones.
    agents = await ctx.services.reader.run(lambda q: q.agent_configs())
    budgets: dict[str, Any] = {
        "hive": {"usd": cfg.daily_budget_usd, "tokens": cfg.daily_budget_tokens},
        "agents": {},
    }
    for name, raw in agents:
        a, _ = stored_agent_config(name, raw)
        if (a.daily_budget_usd or a.daily_budget_tokens) and (not agent or name == agent):
            budgets["agents"][name] = {"usd": a.daily_budget_usd, "tokens": a.daily_budget_tokens}
    return {**spent, "budgets": budgets}


# --- the attention inbox ------------------------------------------------------------------


async def inbox(ctx: HiveContext, req: Request) -> Any:
    """inbox{state?, severity?, agent?, kind?, limit?, offset?}: items that need the
    operator, most severe first, with the open counts (hive.attention)."""
    from hive import attention

    f = attention.check_filter(req.args)
    limit = limit_arg(req.args, "limit", 100, 1000)
    offset = arg(req.args, "offset", int, 0)
    if not 0 <= offset <= 10**9:
        raise WireError("bad_request", f"'offset' must be from 0 to 10^9, got {offset}")

    def read(q: Any) -> dict[str, Any]:
        return {
            "items": attention.list_items(q, f, limit, offset),
            "total": attention.total(q, f),
            "counts": attention.counts(q),
        }

    return await ctx.services.reader.run(read)


def _mark_ids(req: Request) -> list[int] | None:
    if arg(req.args, "all", bool, False):
        if "ids" in req.args:
            raise WireError("bad_request", "give 'ids' or 'all', not both")
        return None
    ids = req.args.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > 10_000:
        raise WireError(
            "empty_scope", "'inbox_mark' needs 'ids' (1 to 10000 item ids) or 'all': true"
        )
    return [id_arg({"id": i}, "id") for i in ids]


async def inbox_mark(ctx: HiveContext, req: Request) -> Any:
    """inbox_mark{state, ids | all, state/severity/agent/kind filter for all}: move items
    to new, seen or done. Replies once committed: how many changed (0: nothing to do)."""
    from hive import attention
    from hive.actors.attention import publish_changes
    from hive.actors.store import Write

    state = arg(req.args, "state", str)
    if state not in attention.STATES:
        raise WireError("bad_request", f"state must be one of {', '.join(attention.STATES)}")
    ids = _mark_ids(req)
    f = attention.check_filter({**req.args, "state": req.args.get("filter_state")})

    def op(q: Any) -> tuple[list[int], dict[str, Any]]:
        return attention.mark(q, state, ids, f), attention.counts(q)

    def done(reply: Any, result: Any, error: BaseException | None) -> None:
        if error is not None:
            reply(WireError("store_failed", f"nothing was marked: {error}"))
            return
        changed, counts = result
        if changed:
            rows = [{"id": i, "state": state} for i in changed[:5000]]
            publish_changes(ctx, rows, counts)
        reply({"changed": len(changed), "state": state, "counts": counts})

    return await ask_actor(ctx, "store", lambda r: Write(op, partial(done, r)), math.inf)


# --- the table ----------------------------------------------------------------------------


def verb_table(fault_injection: bool = False) -> dict[str, Verb]:
    """Every admin verb, by name: composed here and nowhere else."""
    table: dict[str, Verb] = {
        "version": version,
        "list": list_agents,
        "status": status,
        "send": send,
        "kick": kick,
        "pause": _control_verb(agent_msgs.Pause),
        "resume": _control_verb(agent_msgs.Resume),
        "reset": _control_verb(agent_msgs.Reset),
        "cancel": cancel,
        "start": _control_verb(agent_msgs.Start),
        "stop": stop,
        "restart": _control_verb(agent_msgs.Restart),
        "messages": messages,
        "turns": turns,
        "transcript": transcript,
        "events": events,
        "login_info": login_info,
        "clear_mail": clear_mail,
        "pending": pending,
        "approve": approve,
        "deny": _resolver("deny", "reason"),
        "answer": _resolver("answer", "answer", required=True),
        "approvals": approvals,
        "drafts": drafts,
        "scheduled": scheduled,
        "model": model,
        "spawn": spawn,
        "destroy": destroy,
        "logs": logs,
        "stats": stats,
        "cost": cost,
        "inbox": inbox,
        "inbox_mark": inbox_mark,
    }
    if fault_injection:
        table["inject_fault"] = inject_fault
    return table
