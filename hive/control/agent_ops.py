"""Control-plane ops on the agent sockets (their table: ``op_table``, given to the sockets by
hive.daemon).

    ask_operator{question, options?, ttl_seconds?}  -> held until answered / cancelled /
                                                       expired: {id, status, answer?}
    cancel_question{id}                              -> {id, status: "cancelled"}
    request_spawn{name, model?, prompt?, config?}    -> {id, kind, status: "pending"}
    request_spawn_draft{name}                        -> {draft, config_dir, ref, file}
    request_spawn_commit{name, ref}                  -> {id, kind, status: "pending"}
    request_apply_commit{agent, ref}                 -> {id, kind, status: "pending"}
    schedule_prompt{agent, at, text}                 -> {id, kind, status: "pending"}

The request_* ops and schedule_prompt are the manager's only (hive.policy checks that
before these handlers run). Git work happens here, on the IO side; the Approvals actor
decides and records.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hive.control import gitrepo, records
from hive.control.calls import ask_actor, run_request
from hive.control.spawn import agent_toml, config_change, config_from_toml, spawn_config
from hive.control.tasks import paths_of
from hive.control.times import iso, parse_at
from hive.io.agent_socket import AgentOp
from hive.wire import Request, WireError, arg, id_arg, validate_agent_name

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.config import AgentConfig
    from hive.io.agent_socket import AgentConnection

MAX_QUESTION_CHARS = 8000
MAX_OPTIONS = 20
MAX_OPTION_CHARS = 500

_waiter_ids = itertools.count(1)


def _tell(ctx: HiveContext, target: str, message: object) -> None:
    if not ctx.refs.tell(target, message):
        raise WireError("unavailable", f"{target} is not running right now; try again")


# --- questions ----------------------------------------------------------------------------


def ask_operator(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import MAX_QUESTION_TTL, Ask, WaiterGone

    question = arg(req.args, "question", str).strip()
    if not question or len(question) > MAX_QUESTION_CHARS:
        raise WireError("bad_request", f"the question must be 1 to {MAX_QUESTION_CHARS} characters")
    options = req.args.get("options") or []
    if (
        not isinstance(options, list)
        or len(options) > MAX_OPTIONS
        or not all(isinstance(o, str) and 0 < len(o) <= MAX_OPTION_CHARS for o in options)
    ):
        raise WireError(
            "bad_request",
            f"options must be a list of up to {MAX_OPTIONS} non-empty strings "
            f"of at most {MAX_OPTION_CHARS} characters",
        )
    ttl = arg(req.args, "ttl_seconds", float, None)
    if ttl is not None and not 0 < ttl <= MAX_QUESTION_TTL:
        raise WireError(
            "bad_request", f"ttl_seconds must be above 0 and at most {MAX_QUESTION_TTL:g}"
        )
    waiter_id = next(_waiter_ids)

    def gone() -> None:
        ctx.refs.tell("approvals", WaiterGone(waiter_id))

    def finish(result: Any) -> None:  # trio thread
        if gone in conn.on_close:
            conn.on_close.remove(gone)
        # The outcome's inbox copy waits for this reply's ack; unread, the inbox has it.
        ctx.services.agent_sockets.reply_carrying(conn, req.id, result)

    _tell(
        ctx,
        "approvals",
        Ask(
            agent,
            question,
            tuple(options),
            ttl,
            waiter_id,
            lambda result: ctx.io.call_soon(finish, result),
        ),
    )
    conn.on_close.append(gone)


def cancel_question(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import Resolve

    qid = id_arg(req.args, "id")

    def done(result: Any) -> None:
        if isinstance(result, dict):
            result = {"id": result["id"], "status": result["status"]}
        conn.reply_threadsafe(req.id, result)

    _tell(ctx, "approvals", Resolve(qid, "cancel", agent, owner=agent, reply=done))


# --- spawning -----------------------------------------------------------------------------


async def _config_of(ctx: HiveContext, name: str) -> dict[str, Any] | None:
    return await ctx.services.reader.run(lambda q: records.agent_config(q, name))


def _spawn_overrides(req: Request) -> dict[str, Any]:
    overrides: dict[str, Any] = dict(arg(req.args, "config", dict, {}))
    for key in ("model", "prompt"):
        value = arg(req.args, key, str, None)
        if value:
            overrides[key] = value
    return overrides


def request_spawn(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import Propose

    name = validate_agent_name(arg(req.args, "name", str))
    overrides = _spawn_overrides(req)

    async def work() -> Any:
        cfg = spawn_config(name, agent, overrides, await _config_of(ctx, agent))
        description = f"spawn agent '{name}' ({cfg.runtime}, model {cfg.model})"
        details = {
            "config": cfg.to_dict(),
            "agent_toml": agent_toml(cfg),
            "diff": config_change(None, cfg.to_dict()),
        }
        return await ask_actor(
            ctx, "approvals", lambda r: Propose("spawn", name, agent, description, details, r)
        )

    run_request(ctx, conn, req, work)


def request_spawn_draft(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import OpenDraft

    name = validate_agent_name(arg(req.args, "name", str))

    async def work() -> Any:
        cfg = spawn_config(name, agent, {}, await _config_of(ctx, agent))
        draft = await ask_actor(
            ctx, "approvals", lambda r: OpenDraft(name, agent, agent_toml(cfg), r)
        )
        return {
            "draft": name,
            "config_dir": draft["config_dir"],
            "file": gitrepo.CONFIG_FILE,
            "ref": draft["base_sha"],
            "next": "edit agent.toml, commit, then request_spawn_commit(name, ref)",
        }

    run_request(ctx, conn, req, work)


async def _read_commit(repo: Path, ref: str, name: str) -> tuple[str, AgentConfig]:
    """The commit ``ref`` of a config repo: its sha and the agent config it holds."""
    sha = await gitrepo.resolve_commit(repo, ref)
    return sha, config_from_toml(await gitrepo.read_config(repo, sha), name)


def _commit_details(
    repo: Path,
    ref: str,
    sha: str,
    cfg: AgentConfig,
    base_sha: str,
    before: dict[str, Any] | None,
) -> dict[str, Any]:
    """What an approval of a config commit carries (a spawn's has no ``config_before``)."""
    details: dict[str, Any] = {"config": cfg.to_dict()}
    if before is not None:
        details["config_before"] = before
    details.update(
        sha=sha,
        ref=ref,
        base_sha=base_sha,
        # What takes effect, drawn by hive from the parsed commit: never git's diff,
        # which the repo's own attributes and config can disguise.
        diff=config_change(before, cfg.to_dict()),
        config_dir=str(repo),
    )
    return details


async def _propose_commit(
    ctx: HiveContext,
    kind: str,
    target: str,
    agent: str,
    commit: tuple[Path, str],
    before: dict[str, Any] | None,
    base_of: Callable[[], Awaitable[str]],
    describe: Callable[[str], str],
) -> Any:
    """Read the config commit (repo, ref) and propose it to the Approvals actor as ``kind``
    for ``target``: its details diffed against ``before`` from the base ``base_of`` gives
    (asked after the commit is read), described by ``describe(short sha)``."""
    from hive.actors.approvals import Propose

    repo, ref = commit
    sha, cfg = await _read_commit(repo, ref, target)
    details = _commit_details(repo, ref, sha, cfg, await base_of(), before)
    description = describe(sha[:12])
    return await ask_actor(
        ctx,
        "approvals",
        lambda r: Propose(kind, target, agent, description, details, r),
    )


def request_spawn_commit(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import GetDraft

    name = validate_agent_name(arg(req.args, "name", str))
    ref = gitrepo.check_ref(arg(req.args, "ref", str))

    async def work() -> Any:
        draft = await ask_actor(ctx, "approvals", lambda r: GetDraft(name, r))

        async def draft_base() -> str:
            return str(draft["base_sha"])

        return await _propose_commit(
            ctx, "spawn_commit", name, agent, (Path(draft["config_dir"]), ref), None, draft_base,
            lambda sha: f"spawn agent '{name}' from draft commit {sha}",
        )  # fmt: skip

    run_request(ctx, conn, req, work)


def request_apply_commit(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    target = validate_agent_name(arg(req.args, "agent", str))
    ref = gitrepo.check_ref(arg(req.args, "ref", str))

    async def work() -> Any:
        found = await ctx.services.reader.run(lambda q: records.agent_deployment(q, target))
        if found is None:
            raise WireError("unknown_agent", f"no agent named '{target}'")
        before, deployed = found
        repo = paths_of(ctx, target).config
        if not await gitrepo.is_repo(repo):
            raise WireError(
                "no_config_repo",
                f"agent '{target}' has no config repo at {repo}: agents declared in hive.toml "
                "are configured there; spawned agents get one",
            )

        async def deployed_base() -> str:
            # The deployed commit, unless the repo no longer has it: then its first.
            base = deployed if await gitrepo.has_commit(repo, deployed) else None
            return base or await gitrepo.root_commit(repo)

        return await _propose_commit(
            ctx, "apply_commit", target, agent, (repo, ref), before, deployed_base,
            lambda sha: f"apply config commit {sha} to '{target}'",
        )  # fmt: skip

    run_request(ctx, conn, req, work)


# --- scheduled prompts --------------------------------------------------------------------


def schedule_prompt(ctx: HiveContext, agent: str, conn: AgentConnection, req: Request) -> None:
    from hive.actors.approvals import Propose

    target = validate_agent_name(arg(req.args, "agent", str))
    at = parse_at(req.args.get("at"))
    text = arg(req.args, "text", str)
    if not text.strip():
        raise WireError("bad_request", "the prompt text is empty")
    if len(text.encode()) > ctx.config.max_body_bytes:
        raise WireError("body_too_large", f"the prompt exceeds {ctx.config.max_body_bytes} bytes")
    details = {"at": at, "at_iso": iso(at), "text": text}
    description = f"prompt '{target}' at {iso(at)}: {text[:80]}"

    def done(result: Any) -> None:
        conn.reply_threadsafe(req.id, result)

    _tell(
        ctx,
        "approvals",
        Propose("schedule_prompt", target, agent, description, details, done),
    )


def op_table() -> dict[str, AgentOp]:
    """The control plane's agent-socket ops, by name (the core ops, send, recv, ack,
    set_status, kick_agent and whoami, join them in hive.io.agent_socket.AgentSockets._table)."""
    return {
        "ask_operator": ask_operator,
        "cancel_question": cancel_question,
        "request_spawn": request_spawn,
        "request_spawn_draft": request_spawn_draft,
        "request_spawn_commit": request_spawn_commit,
        "request_apply_commit": request_apply_commit,
        "schedule_prompt": schedule_prompt,
    }
