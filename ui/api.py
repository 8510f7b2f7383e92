"""The JSON API under /api: the dashboard page uses exactly these endpoints.

Reads come from the StateHub (live rows) or the database (history, through the Reader's
worker threads); mutations go to the actors with tell + a reply callback. Errors are
``{"error": {"code", "message"}}`` with a fitting status. ``/api/openapi.json`` describes it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, get_type_hints

from quart import Blueprint, Response, jsonify, request

from hive import __version__, agentlog, logtail
from hive.status import AgentStatus
from hive.telemetry import select_stats, summarize
from hive.ui import logs
from hive.ui.calls import ApiError, ask, call_verb, has_verb, one_agent
from hive.ui.context import dashboard
from hive.ui.remote import (
    REMOTE_ROW_OPS,
    Target,
    check_hive_known,
    fleet_reply,
    question_ref,
    remote_questions,
    target,
)
from hive.ui.schemas import (
    AgentList,
    AnswerBody,
    Approvals,
    CostQuery,
    CostReply,
    DenyBody,
    DestroyBody,
    Events,
    EventsQuery,
    Fleet,
    History,
    HistoryQuery,
    Inbox,
    InboxMarkBody,
    InboxMarked,
    InboxQuery,
    KickBody,
    LimitQuery,
    LogQuery,
    LogStreamQuery,
    Messages,
    MessagesQuery,
    ModelBody,
    ModelQuery,
    ModelReply,
    RemoteQuestions,
    Result,
    Scheduled,
    SendBody,
    SessionReply,
    SpawnBody,
    Stats,
    StatsQuery,
    StopBody,
    StreamQuery,
    TurnEvents,
    Turns,
    TurnsQuery,
    parse,
)
from hive.ui.sse import EventStream, parse_kinds
from hive.wire import OPERATOR, WireError, check_id, check_since, validate_agent_name

api = Blueprint("api", __name__, url_prefix="/api")

CONTROL_OPS = ("pause", "resume", "cancel", "reset", "restart", "start", "stop")
KEY_RE = re.compile(r"^[A-Za-z0-9_.:*-]{1,80}$")


# --- helpers ------------------------------------------------------------------------------


@api.errorhandler(ApiError)
async def _api_error(exc: ApiError) -> tuple[Response, int]:
    return jsonify(exc.to_json()), exc.status


def _agent_name(name: str) -> str:
    try:
        return validate_agent_name(name)
    except WireError as exc:
        raise ApiError(400, exc.code, exc.message) from None


def _known_agent(name: str) -> str:
    name = _agent_name(name)
    ctx = dashboard().ctx
    if ctx.refs.get(ctx.agent_ref_name(name)) is None:
        raise ApiError(404, "unknown_agent", f"no agent named '{name}'")
    return name


def _acted_on(name: str, op: str) -> Target:
    """The agent a row action names: one of this hive (it must exist here), or
    ``bob@beta``, whose hive checks it (for the ops another hive runs for us)."""
    who = target(dashboard().ctx, name)
    if who.hive is None:
        _known_agent(who.agent)
    elif op not in REMOTE_ROW_OPS:
        can = ", ".join(REMOTE_ROW_OPS)
        raise ApiError(400, "not_remote", f"'{op}' cannot be asked of another hive ({can} can)")
    return who


async def _body() -> dict[str, Any]:
    """The request's JSON object (or form fields)."""
    data = await request.get_json(silent=True)
    if data is None:
        form = await request.form
        data = {k: v for k, v in form.items() if k != "csrf"}
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return data


View = Callable[..., Awaitable[Any]]


def typed(view: View) -> Callable[..., Awaitable[Response]]:
    """The view's ``query`` and ``body`` parameters parsed into the models they are
    annotated with (hive.ui.schemas), and what it returns answered as JSON. The same
    annotations are what /api/openapi.json describes (hive.ui.openapi)."""
    hints = get_type_hints(view)
    query_model, body_model = hints.get("query"), hints.get("body")

    @functools.wraps(view)
    async def run(**path: Any) -> Response:
        if query_model is not None:
            given = {k: v for k, v in request.args.items() if v != ""}  # "x=": the default
            path["query"] = parse(query_model, given, "query")
        if body_model is not None:
            path["body"] = parse(body_model, await _body(), "body")
        out = await view(**path)
        return out if isinstance(out, Response) else jsonify(out)

    return run


async def _snapshot(kinds: frozenset[str]) -> dict[str, Any]:
    from hive.actors.hub import GetSnapshot

    ctx = dashboard().ctx
    snap: dict[str, Any] = await ask(ctx, "hub", lambda reply: GetSnapshot(reply, kinds))
    return snap


async def _agent_rows() -> list[AgentStatus]:
    snap = await _snapshot(frozenset({"agent"}))
    return sorted(snap["items"].get("agent", []), key=lambda r: r["name"])


# --- session ------------------------------------------------------------------------------


@api.get("/session")
@typed
async def session() -> SessionReply:
    """The CSRF token and which optional features this hive has"""
    board = dashboard()
    return {
        "csrf": board.auth.csrf,
        "version": __version__,
        "features": {
            "set_model": has_verb(board.ctx, "model"),
            "approvals": has_verb(board.ctx, "approve"),
            "questions": has_verb(board.ctx, "answer"),
            "journald": agentlog.source() == "journald",
            "models": board.ctx.config.known_models(),
        },
    }


# --- agents -------------------------------------------------------------------------------


@api.get("/agents")
@typed
async def agents() -> AgentList:
    """Every agent's status row"""
    return {"agents": await _agent_rows()}


@api.get("/agents/<name>")
@typed
async def agent(name: str) -> AgentStatus:
    """One agent's status row"""
    name = _agent_name(name)
    for row in await _agent_rows():
        if row["name"] == name:
            return row
    raise ApiError(404, "unknown_agent", f"no agent named '{name}'")


@api.get("/agents/<name>/messages")
@typed
async def agent_messages(name: str, query: MessagesQuery) -> Messages:
    """The agent's mail in both directions, newest first, each with its delivery state."""
    name = _agent_name(name)
    rows = await dashboard().ctx.services.reader.run(
        lambda q: q.messages(name, query.limit, before_id=query.before)
    )
    if query.state:
        rows = [r for r in rows if r["state"] == query.state and r["to"] == name]
    return {"messages": rows}


@api.post("/agents/<name>/messages")
@typed
async def send_message(name: str, body: SendBody) -> Result:
    """Send a message to the agent as the operator."""
    ctx = dashboard().ctx
    who = target(ctx, name)
    if who.hive is None:
        _known_agent(who.agent)
    if not body.body.strip():
        raise ApiError(400, "bad_request", "the message is empty")
    if who.hive is not None:
        check_hive_known(ctx, who.hive)
    args = {"to": who.address, "body": body.body}
    result: Result = await call_verb(dashboard().ctx, "send", args)
    return result


@api.post("/agents/<name>/kick")
@typed
async def kick(name: str, body: KickBody) -> Result:
    """Wake the agent for a turn"""
    who = _acted_on(name, "kick")
    args = {"names": [who.address], "note": body.note or ""}
    result: Result = one_agent(await call_verb(dashboard().ctx, "kick", args), who.agent)
    return result


@api.post("/agents/<name>/stop")
@typed
async def stop(name: str, body: StopBody) -> Result:
    """Stop the agent after its running turn (``hard``: cancel the turn now)"""
    name = _known_agent(name)
    args = {"names": [name], "hard": body.hard}
    result: Result = one_agent(await call_verb(dashboard().ctx, "stop", args), name)
    return result


@api.post("/agents/<name>/destroy")
@typed
async def destroy(name: str, body: DestroyBody) -> Result:
    """Remove the agent (its state dir kept unless ``purge``): the `destroy` admin verb"""
    name = _known_agent(name)
    args = {"names": [name], "purge": body.purge}
    result: Result = await call_verb(dashboard().ctx, "destroy", args)
    return result["agents"][name]  # type: ignore[no-any-return]


@api.post("/spawn")
@typed
async def spawn(body: SpawnBody) -> Result:
    """Create and start an agent now: the `spawn` admin verb"""
    args = {k: v for k, v in body.model_dump().items() if v}
    result: Result = await call_verb(dashboard().ctx, "spawn", args)
    return result


@api.post("/agents/<name>/<op>")
@typed
async def control(name: str, op: str) -> Result:
    """pause, resume, cancel, reset, start, stop and restart: the admin verbs of those
    names, for this one agent."""
    if op not in CONTROL_OPS:
        raise ApiError(404, "not_found", f"unknown agent operation '{op}'")
    who = _acted_on(name, op)
    result: Result = one_agent(
        await call_verb(dashboard().ctx, op, {"names": [who.address]}), who.agent
    )
    return result


@api.get("/fleet")
@typed
async def fleet() -> Fleet:
    """Every hive of the federation: its agents and its link's health (connected, round
    trip, outbox depth per destination, consumer lag); ``hive`` null without federation"""
    result: Fleet = fleet_reply(dashboard().ctx)  # type: ignore[assignment]
    return result


@api.get("/fleet/questions")
@typed
async def fleet_questions() -> RemoteQuestions:
    """The pending questions of the other hives' agents, each asked of its hive (only the
    hives whose fleet row counts some); a hive that refuses or does not answer is in
    ``errors``"""
    result: RemoteQuestions = await remote_questions(dashboard().ctx)  # type: ignore[assignment]
    return result


@api.get("/agents/<name>/turns")
@typed
async def turns(name: str, query: TurnsQuery) -> Turns:
    """The agent's turns, newest first"""
    name = _agent_name(name)
    rows = await dashboard().ctx.services.reader.run(
        lambda q: q.turns(name, query.limit, query.before)
    )
    return {"turns": rows}


@api.get("/turns/<int:turn_id>/events")
@typed
async def turn_events(turn_id: int) -> TurnEvents:
    """A turn's transcript: text, tool calls and results, in order."""
    turn_id = _item_id(str(turn_id), "turn_id")  # the route takes any size; SQLite does not
    rows = await dashboard().ctx.services.reader.run(lambda q: q.turn_events(turn_id))
    return {"turn_id": turn_id, "events": rows}


@api.get("/events")
@typed
async def events(query: EventsQuery) -> Events:
    """Hive events (crashes, failures), newest first"""
    agent_arg = _agent_name(query.agent) if query.agent else None
    rows = await dashboard().ctx.services.reader.run(lambda q: q.events(agent_arg, query.limit))
    return {"events": rows}


@api.get("/operator/messages")
@typed
async def operator_messages(query: LimitQuery) -> Messages:
    """Messages to and from the operator (the notification row), newest first."""
    limit = query.limit
    rows = await dashboard().ctx.services.reader.run(lambda q: q.messages(OPERATOR, limit))
    return {"messages": rows}


# --- model --------------------------------------------------------------------------------


@api.get("/model")
@typed
async def get_model(query: ModelQuery) -> ModelReply:
    """An agent's active model"""
    name = _agent_name(query.agent)
    for row in await _agent_rows():
        if row["name"] == name:
            return {"agent": name, "model": row.get("active_model")}
    raise ApiError(404, "unknown_agent", f"no agent named '{name}'")


@api.post("/model")
@typed
async def set_model(body: ModelBody) -> ModelReply:
    """Set an agent's model for its next turns: the control plane's `model` admin verb."""
    name = _known_agent(body.agent)
    model = body.model.strip()
    if not model:  # the verb would read "" as "show the model"
        raise ApiError(400, "bad_request", "not a model name: ''")
    args = {"names": [name], "model": model, "force": body.force}
    result = await call_verb(dashboard().ctx, "model", args)
    return {"agent": name, "model": result["agents"][name]["model"]}


# --- approvals and questions (the control plane's admin verbs) ----------------------------


@api.get("/approvals")
@typed
async def approvals() -> Approvals:
    """Pending approvals, operator questions and drafts"""
    snap = await _snapshot(frozenset({"approval", "question", "draft"}))
    items = snap["items"]
    return {
        "approvals": items.get("approval", []),
        "questions": items.get("question", []),
        "drafts": items.get("draft", []),
        "seq": snap["seq"],
    }


def _item_id(raw: str, name: str = "id") -> int:
    """An id from the path, checked as every socket checks one (hive.wire.check_id)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        raise ApiError(400, "bad_request", f"'{name}' must be an integer id, got {raw[:40]!r}")
    try:
        return check_id(int(raw), name)
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


@api.post("/approvals/<item_id>/<decision>")
@typed
async def decide(item_id: str, decision: str, body: DenyBody) -> Result:
    """Approve (runs the action at once) or deny (with an optional reason)"""
    if decision not in ("approve", "deny"):
        raise ApiError(404, "not_found", f"unknown decision '{decision}'")
    args: dict[str, Any] = {"id": _item_id(item_id)}
    if decision == "deny" and body.reason:
        args["reason"] = body.reason
    result: Result = await call_verb(dashboard().ctx, decision, args)
    return result


@api.get("/approvals/history")
@typed
async def approval_history(query: HistoryQuery) -> History:
    """Approvals and questions, newest first, with who resolved them, when and how"""
    args: dict[str, Any] = {"limit": query.limit}
    if query.status:
        args["status"] = query.status
    if query.agent:
        args["agent"] = _agent_name(query.agent)
    result: History = await call_verb(dashboard().ctx, "approvals", args)
    return result


@api.get("/scheduled")
@typed
async def scheduled() -> Scheduled:
    """Approved prompts waiting for their time"""
    result: Scheduled = await call_verb(dashboard().ctx, "scheduled", {})
    return result


@api.post("/scheduled/<item_id>/cancel")
@typed
async def cancel_scheduled(item_id: str) -> Result:
    """Cancel a scheduled prompt before it is sent"""
    result: Result = await call_verb(dashboard().ctx, "cancel", {"id": _item_id(item_id)})
    return result


@api.post("/questions/<item_id>/answer")
@typed
async def answer(item_id: str, body: AnswerBody) -> Result:
    """Answer an operator question: ``12``, or ``12@beta`` (beta's question 12, answered
    by beta, which authorises it)"""
    ref, hive = question_ref(dashboard().ctx, item_id)
    args: dict[str, Any] = {"id": _item_id(ref), "answer": body.answer}
    if hive is not None:
        args["hive"] = hive
    result: Result = await call_verb(dashboard().ctx, "answer", args)
    return result


@api.post("/questions/<item_id>/cancel")
@typed
async def cancel_question(item_id: str) -> Result:
    """Cancel an operator question"""
    if not has_verb(dashboard().ctx, "answer"):
        raise ApiError(501, "not_available", "operator questions need the control plane")
    args = {"id": _item_id(item_id)}
    result: Result = await call_verb(dashboard().ctx, "cancel", args)
    return result


# --- the attention inbox (the admin verbs inbox and inbox_mark) --------------------------


@api.get("/inbox")
@typed
async def inbox(query: InboxQuery) -> Inbox:
    """What needs the operator, most severe first, and the open counts"""
    args = query.model_dump(exclude_defaults=True)
    args.setdefault("limit", query.limit)
    result: Inbox = await call_verb(dashboard().ctx, "inbox", args)
    return result


@api.post("/inbox/mark")
@typed
async def inbox_mark(body: InboxMarkBody) -> InboxMarked:
    """Move items to new, seen or done: by id, or ``all`` that match the filter"""
    args = body.model_dump(exclude_none=True)
    if not body.all:
        args.pop("all")
    result: InboxMarked = await call_verb(dashboard().ctx, "inbox_mark", args)
    return result


# --- stats --------------------------------------------------------------------------------


@api.get("/stats")
@typed
async def stats(query: StatsQuery) -> Stats:
    """Turn telemetry series and a summary: ``?agent=&since=&keys=turn.duration,tool.*``
    (since: unix seconds, or negative for 'seconds ago'; default the last hour)."""
    agent = _agent_name(query.agent) if query.agent else None
    now = time.time()
    since = query.since
    if since is None:
        since = now - 3600
    else:
        try:
            since = check_since(since, now)
        except WireError as exc:
            raise ApiError.from_wire(exc) from None
    keys = [k.strip() for k in query.keys.split(",") if k.strip()]
    for key in keys:
        if not KEY_RE.match(key) or "*" in key[:-1]:
            raise ApiError(400, "bad_request", f"bad stats key {key!r}")
    rows = await dashboard().ctx.services.reader.run(lambda q: select_stats(q, agent, since, keys))
    series: dict[str, list[list[float]]] = {}
    for _, ts, key, value in rows:
        series.setdefault(key, []).append([ts, value])
    spent: CostReply = await call_verb(dashboard().ctx, "cost", {"agent": agent or ""})
    spent.pop("budgets", None)  # type: ignore[misc]
    return {
        "agent": agent,
        "since": since,
        "now": now,
        "series": series,
        "summary": summarize(rows, since, now),
        "cost": spent,
    }


@api.get("/cost")
@typed
async def cost(query: CostQuery) -> CostReply:
    """What turns cost, today (UTC) and over 7 days, per agent, model and day, and the
    daily budgets: the `cost` admin verb"""
    agent = _agent_name(query.agent) if query.agent else ""
    result: CostReply = await call_verb(dashboard().ctx, "cost", {"agent": agent})
    return result


# --- logs ---------------------------------------------------------------------------------


@api.get("/agents/<name>/log")
@typed
async def agent_log(name: str, query: LogQuery) -> Result:
    """The agent's log (journald, else its agent.log), as ``hivectl logs`` shows it: the
    newest lines, or those after ``after`` (a cursor from an earlier page)"""
    name = _agent_name(name)
    args = {"name": name, "lines": query.lines, "after": query.after}
    result: Result = await call_verb(dashboard().ctx, "logs", args)
    return result


@api.get("/agents/<name>/log/stream")
@typed
async def agent_log_stream(name: str, query: LogStreamQuery) -> Response:
    """Follow the agent's log: new lines (after ``after``, else from now on) as
    server-sent events."""
    name = _agent_name(name)
    board = dashboard()
    after = request.headers.get("Last-Event-ID", "")[:512] or query.after  # a reconnect's
    try:
        logtail.check_cursor(after)
    except logtail.LogError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    follower = logs.Follower(board.ctx, name, after)
    board.closers.add(follower.close)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in follower.events():
                yield chunk
        finally:
            board.closers.discard(follower.close)
            follower.close()

    return _sse_response(body())


# --- the live stream ----------------------------------------------------------------------

_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _sse_response(body: AsyncIterator[bytes]) -> Response:
    response = Response(body, headers=_SSE_HEADERS)
    response.timeout = None  # else quart cuts the stream after 60 s
    return response


@api.get("/stream")
@typed
async def stream(query: StreamQuery) -> Response:
    """Server-sent events: a snapshot, then every StateHub change of the given kinds."""
    try:
        kinds = parse_kinds(query.kinds)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    board = dashboard()
    feed = EventStream(board.ctx, kinds, query.backlog, board.streams)
    if not feed.open():
        feed.close()
        raise ApiError(503, "unavailable", "the state hub is not running (restarting?)")

    async def body() -> AsyncIterator[bytes]:
        async for chunk in feed.events():
            yield chunk

    return _sse_response(body())
