"""The JSON API under /api: the dashboard page uses exactly these endpoints.

Reads come from the StateHub (live rows) or the database (history, through the Reader's
worker threads); mutations go to the actors with tell + a reply callback. Errors are
``{"error": {"code", "message"}}`` with a fitting status. ``/api/openapi.json`` describes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, jsonify, request

from hive import __version__
from hive.journal import journal_available
from hive.telemetry import select_stats, summarize
from hive.ui import logs
from hive.ui.calls import ApiError, ask, call_verb, has_verb, one_agent
from hive.ui.context import dashboard
from hive.ui.sse import EventStream, parse_kinds
from hive.wire import OPERATOR, WireError, check_id, check_since, validate_agent_name

api = Blueprint("api", __name__, url_prefix="/api")

CONTROL_OPS = ("pause", "resume", "cancel", "reset", "restart", "start", "stop")
MAX_LIMIT = 1000
KEY_RE = re.compile(r"^[A-Za-z0-9_.:*-]{1,80}$")


# --- helpers ------------------------------------------------------------------------------


@api.errorhandler(ApiError)
async def _api_error(exc: ApiError) -> tuple[Response, int]:
    return jsonify(exc.to_json()), exc.status


def _int_arg(name: str, default: int | None, lo: int = 0, hi: int = MAX_LIMIT) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"'{name}' must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"'{name}' must be between {lo} and {hi}")
    return value


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"'{name}' must be a number, got {raw!r}") from None


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


async def _body() -> dict[str, Any]:
    """The request's JSON object (or form fields)."""
    data = await request.get_json(silent=True)
    if data is None:
        form = await request.form
        data = {k: v for k, v in form.items() if k != "csrf"}
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return data


def _str_field(data: dict[str, Any], key: str, *, required: bool = True, limit: int = 0) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ApiError(400, "bad_request", f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"field '{key}' must be a string")
    if limit and len(value) > limit:
        raise ApiError(400, "bad_request", f"field '{key}' is limited to {limit} characters")
    return value


async def _snapshot(kinds: frozenset[str]) -> dict[str, Any]:
    from hive.actors.hub import GetSnapshot

    ctx = dashboard().ctx
    snap: dict[str, Any] = await ask(ctx, "hub", lambda reply: GetSnapshot(reply, kinds))
    return snap


async def _agent_rows() -> list[dict[str, Any]]:
    snap = await _snapshot(frozenset({"agent"}))
    return sorted(snap["items"].get("agent", []), key=lambda r: r["name"])


# --- session ------------------------------------------------------------------------------


@api.get("/session")
async def session() -> Response:
    board = dashboard()
    return jsonify(
        {
            "csrf": board.auth.csrf,
            "version": __version__,
            "features": {
                "set_model": has_verb(board.ctx, "model"),
                "approvals": has_verb(board.ctx, "approve"),
                "questions": has_verb(board.ctx, "answer"),
                "journald": journal_available(),
            },
        }
    )


# --- agents -------------------------------------------------------------------------------


@api.get("/agents")
async def agents() -> Response:
    return jsonify({"agents": await _agent_rows()})


@api.get("/agents/<name>")
async def agent(name: str) -> Response:
    name = _agent_name(name)
    for row in await _agent_rows():
        if row["name"] == name:
            return jsonify(row)
    raise ApiError(404, "unknown_agent", f"no agent named '{name}'")


@api.get("/agents/<name>/messages")
async def agent_messages(name: str) -> Response:
    """The agent's mail in both directions, newest first, each with its delivery state."""
    name = _agent_name(name)
    limit = _int_arg("limit", 100, 1) or 100
    before = _int_arg("before", None, 1, 2**62)
    state = request.args.get("state", "")
    if state not in ("", "pending", "delivered"):
        raise ApiError(400, "bad_request", "'state' must be pending or delivered")
    rows = await dashboard().ctx.services.reader.run(
        lambda q: q.messages(name, limit, before_id=before)
    )
    if state:
        rows = [r for r in rows if r["state"] == state and r["to"] == name]
    return jsonify({"messages": rows})


@api.post("/agents/<name>/messages")
async def send_message(name: str) -> Response:
    """Send a message to the agent as the operator."""
    name = _known_agent(name)
    body = _str_field(await _body(), "body")
    if not body.strip():
        raise ApiError(400, "bad_request", "the message is empty")
    return jsonify(await call_verb(dashboard().ctx, "send", {"to": name, "body": body}))


@api.post("/agents/<name>/kick")
async def kick(name: str) -> Response:
    name = _known_agent(name)
    note = _str_field(await _body(), "note", required=False, limit=4000)
    result = await call_verb(dashboard().ctx, "kick", {"names": [name], "note": note})
    return jsonify(one_agent(result, name))


@api.post("/agents/<name>/<op>")
async def control(name: str, op: str) -> Response:
    """pause, resume, cancel, reset, start, stop and restart: the admin verbs of those
    names, for this one agent."""
    if op not in CONTROL_OPS:
        raise ApiError(404, "not_found", f"unknown agent operation '{op}'")
    name = _known_agent(name)
    result = await call_verb(dashboard().ctx, op, {"names": [name]})
    return jsonify(one_agent(result, name))


@api.get("/agents/<name>/turns")
async def turns(name: str) -> Response:
    name = _agent_name(name)
    limit = _int_arg("limit", 50, 1) or 50
    rows = await dashboard().ctx.services.reader.run(lambda q: q.turns(name, limit))
    return jsonify({"turns": rows})


@api.get("/turns/<int:turn_id>/events")
async def turn_events(turn_id: int) -> Response:
    """A turn's transcript: text, tool calls and results, in order."""
    turn_id = _item_id(str(turn_id), "turn_id")  # the route takes any size; SQLite does not
    rows = await dashboard().ctx.services.reader.run(lambda q: q.turn_events(turn_id))
    return jsonify({"turn_id": turn_id, "events": rows})


@api.get("/events")
async def events() -> Response:
    agent_arg = request.args.get("agent") or None
    if agent_arg is not None:
        agent_arg = _agent_name(agent_arg)
    limit = _int_arg("limit", 100, 1) or 100
    rows = await dashboard().ctx.services.reader.run(lambda q: q.events(agent_arg, limit))
    return jsonify({"events": rows})


@api.get("/operator/messages")
async def operator_messages() -> Response:
    """Messages to and from the operator (the notification row), newest first."""
    limit = _int_arg("limit", 100, 1) or 100
    rows = await dashboard().ctx.services.reader.run(lambda q: q.messages(OPERATOR, limit))
    return jsonify({"messages": rows})


# --- model --------------------------------------------------------------------------------


@api.get("/model")
async def get_model() -> Response:
    name = _agent_name(request.args.get("agent", ""))
    for row in await _agent_rows():
        if row["name"] == name:
            return jsonify({"agent": name, "model": row.get("active_model")})
    raise ApiError(404, "unknown_agent", f"no agent named '{name}'")


@api.post("/model")
async def set_model() -> Response:
    """Set an agent's model for its next turns: the control plane's `model` admin verb."""
    data = await _body()
    name = _known_agent(_str_field(data, "agent"))
    model = _str_field(data, "model").strip()
    if not model:  # the verb would read "" as "show the model"
        raise ApiError(400, "bad_request", "not a model name: ''")
    result = await call_verb(dashboard().ctx, "model", {"names": [name], "model": model})
    return jsonify({"agent": name, "model": result["agents"][name]["model"]})


# --- approvals and questions (the control plane's admin verbs) ----------------------------


@api.get("/approvals")
async def approvals() -> Response:
    snap = await _snapshot(frozenset({"approval", "question", "draft"}))
    items = snap["items"]
    return jsonify(
        {
            "approvals": items.get("approval", []),
            "questions": items.get("question", []),
            "drafts": items.get("draft", []),
            "seq": snap["seq"],
        }
    )


def _item_id(raw: str, name: str = "id") -> int:
    """An id from the path, checked as every socket checks one (hive.wire.check_id)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        raise ApiError(400, "bad_request", f"'{name}' must be an integer id, got {raw[:40]!r}")
    try:
        return check_id(int(raw), name)
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


@api.post("/approvals/<item_id>/<decision>")
async def decide(item_id: str, decision: str) -> Response:
    if decision not in ("approve", "deny"):
        raise ApiError(404, "not_found", f"unknown decision '{decision}'")
    args: dict[str, Any] = {"id": _item_id(item_id)}
    if decision == "deny":
        reason = _str_field(await _body(), "reason", required=False, limit=4000)
        if reason:
            args["reason"] = reason
    return jsonify(await call_verb(dashboard().ctx, decision, args))


@api.post("/questions/<item_id>/answer")
async def answer(item_id: str) -> Response:
    text = _str_field(await _body(), "answer", limit=64_000)
    args = {"id": _item_id(item_id), "answer": text}
    return jsonify(await call_verb(dashboard().ctx, "answer", args))


@api.post("/questions/<item_id>/cancel")
async def cancel_question(item_id: str) -> Response:
    if not has_verb(dashboard().ctx, "answer"):
        raise ApiError(501, "not_available", "operator questions need the control plane")
    args = {"id": _item_id(item_id)}
    return jsonify(await call_verb(dashboard().ctx, "cancel", args))


# --- stats --------------------------------------------------------------------------------


@api.get("/stats")
async def stats() -> Response:
    """Telemetry rows: ``?agent=&since=&keys=turn.duration,tool.*`` (since: unix seconds, or
    negative for 'seconds ago'; default the last hour)."""
    raw_agent = request.args.get("agent") or None
    agent = _agent_name(raw_agent) if raw_agent is not None else None
    now = time.time()
    since = _float_arg("since")
    if since is None:
        since = now - 3600
    else:
        try:
            since = check_since(since, now)
        except WireError as exc:
            raise ApiError.from_wire(exc) from None
    keys = [k.strip() for k in request.args.get("keys", "").split(",") if k.strip()]
    for key in keys:
        if not KEY_RE.match(key) or "*" in key[:-1]:
            raise ApiError(400, "bad_request", f"bad stats key {key!r}")
    rows = await dashboard().ctx.services.reader.run(lambda q: select_stats(q, agent, since, keys))
    series: dict[str, list[list[float]]] = {}
    for _, ts, key, value in rows:
        series.setdefault(key, []).append([ts, value])
    return jsonify(
        {
            "agent": agent,
            "since": since,
            "now": now,
            "series": series,
            "summary": summarize(rows, since, now),
        }
    )


# --- logs ---------------------------------------------------------------------------------


@api.get("/agents/<name>/log")
async def agent_log(name: str) -> Response:
    name = _agent_name(name)
    lines = _int_arg("lines", 200, 1, 5000) or 200
    return jsonify(await logs.read(dashboard().ctx.config, name, lines))


@api.get("/agents/<name>/log/stream")
async def agent_log_stream(name: str) -> Response:
    """Follow mode: new log lines as server-sent events."""
    name = _agent_name(name)
    board = dashboard()
    follower = logs.Follower(board.ctx.config, name)
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
async def stream() -> Response:
    """Server-sent events: a snapshot, then every StateHub change of the given kinds."""
    try:
        kinds = parse_kinds(request.args.get("kinds"))
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    backlog = _int_arg("backlog", 1000, 10, 100_000) or 1000
    board = dashboard()
    feed = EventStream(board.ctx, kinds, backlog, board.streams)
    if not feed.open():
        feed.close()
        raise ApiError(503, "unavailable", "the state hub is not running (restarting?)")

    async def body() -> AsyncIterator[bytes]:
        async for chunk in feed.events():
            yield chunk

    return _sse_response(body())
