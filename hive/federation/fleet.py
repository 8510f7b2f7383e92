"""One view of the fleet, and an operator's verbs on another hive's agents (trio side).

Each hive puts a row into the JetStream key-value bucket ``hive_fleet`` every second:
its agents' status rows and its links' health (connected, round trip, outbox depth per
destination, consumer lag). ``list`` adds every hive's row (``fleet``), so ``hivectl
list`` shows every agent of the federation with its hive.

An operator acts on a remote agent by naming it ``bob@beta`` (or passing ``hive``): the
verb goes over NATS request/reply to ``hive.beta.ctl.<this hive>``; beta checks that its
``[federation] operators`` lists this hive, runs the verb with its own checks, and
answers the result or the error. No hive writes another hive's store.

Another hive's dashboard learns of this hive's pending operator questions in two steps:
the fleet row carries only their count (``questions``), and the ``questions`` verb, asked
over the same request/reply path (so ``operators`` decides who may read them), returns
the questions themselves, oldest first, at most ``MAX_REMOTE_QUESTIONS`` and
``MAX_QUESTIONS_BYTES`` of them (one NATS message; a looping agent cannot flood it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from hive.federation.address import control_subject, split, validate_hive_name
from hive.federation.peer_input import remote_result
from hive.wire import Request, WireError, packb, unpackb

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.control.admin_api import AdminApi, Verb

log = logging.getLogger(__name__)

# A send to bob@beta needs none of this: it goes through the outbox, durably.
REMOTE_VERBS = ("status", "pause", "resume", "kick", "restart", "answer", "questions")
REMOTE_TIMEOUT = 10.0
STATUS_INTERVAL = 1.0
# What the questions verb answers at most: the oldest first, so the longest waiting are
# shown; each question is up to 8,000 characters and 20 options of 500, so the byte cap
# keeps the reply well under NATS's default 1 MiB max_payload.
MAX_REMOTE_QUESTIONS = 50
MAX_QUESTIONS_BYTES = 256 * 1024


async def publish_status(ctx: HiveContext) -> None:
    """Keep the link's copy of this hive's fleet row fresh (it puts it into the bucket)."""
    from hive.actors.forwarder import Depths
    from hive.control.admin_verbs import list_agents
    from hive.control.calls import ask_actor

    link = ctx.federation
    while True:
        try:
            rows = (await list_agents(ctx, Request(0, "list", {})))["agents"]
            depths = await ask_actor(ctx, "forwarder", lambda r: Depths(r), 5)
            link.local_status = {
                "agents": rows,
                "outbox": depths,
                "connected": link.connected,
                "questions": await _open_questions(ctx),
            }
        except WireError as exc:  # an actor not (yet) running: the next round retries
            log.debug("federation: this hive's fleet row: %s", exc)
        except Exception as exc:  # a task of the daemon's nursery: never let it out
            log.warning("federation: this hive's fleet row: %r", exc)
        await trio.sleep(STATUS_INTERVAL)


async def _open_questions(ctx: HiveContext) -> int:
    """How many operator questions wait on this hive (0 without a control plane)."""
    try:
        return len(await _pending_questions(ctx))
    except WireError:
        return 0


async def _pending_questions(ctx: HiveContext) -> list[dict[str, Any]]:
    from hive.actors.approvals import ListPending
    from hive.control.calls import ask_actor

    reply = await ask_actor(ctx, "approvals", lambda r: ListPending(r), 5)
    return [row for row in reply["pending"] if row.get("kind") == "question"]


async def pending_questions(ctx: HiveContext, req: Request) -> Any:
    """questions{}: this hive's pending operator questions, short form, oldest first,
    bounded (module docstring); ``total`` counts them all."""
    rows = await _pending_questions(ctx)
    out: list[dict[str, Any]] = []
    size = 0
    for row in rows[:MAX_REMOTE_QUESTIONS]:
        short = {key: row.get(key) for key in _QUESTION_KEYS}
        size += len(packb(short))
        if size > MAX_QUESTIONS_BYTES:
            break
        out.append(short)
    return {"questions": out, "total": len(rows)}


_QUESTION_KEYS = (
    "id", "agent", "question", "options", "requested_at", "expires_at", "ttl_remaining", "status"
)  # fmt: skip


def fleet_view(ctx: HiveContext) -> list[dict[str, Any]]:
    """Every hive's last row from the bucket, with its age in seconds."""
    now = time.time()
    out = []
    for hive, row in sorted(ctx.federation.fleet.items()):
        out.append({**row, "hive": hive, "age": max(0.0, now - float(row.get("ts", 0)))})
    return out


def remote_verb_table(verbs: dict[str, Verb]) -> dict[str, Verb]:
    """The admin verbs of a federated hive: ``list`` with the fleet, ``questions`` (this
    hive's pending questions, short form), and the remote-capable verbs sent to the owning
    hive when they name one."""
    out = dict(verbs)
    local_list = verbs["list"]

    async def list_with_fleet(ctx: HiveContext, req: Request) -> Any:
        result = await local_list(ctx, req)
        return {**result, "hive": _own(ctx), "fleet": fleet_view(ctx)}

    out["list"] = list_with_fleet
    out["questions"] = pending_questions
    for op in REMOTE_VERBS:
        out[op] = _routed(op, out[op])
    return out


def _own(ctx: HiveContext) -> str:
    assert ctx.config.federation is not None
    return ctx.config.federation.name


def _routed(op: str, local: Verb) -> Verb:
    async def run(ctx: HiveContext, req: Request) -> Any:
        hive, args = _target(ctx, req)
        if hive is None:
            return await local(ctx, Request(req.id, req.op, args))
        return await _ask_remote(ctx, hive, op, args)

    return run


def _target(ctx: HiveContext, req: Request) -> tuple[str | None, dict[str, Any]]:
    """The hive a request is for (None: this one), and its args with names made local."""
    args = dict(req.args)
    hives = set()
    if "hive" in args:
        hives.add(validate_hive_name(args.pop("hive")))
    for key in ("name", "names"):
        value = args.get(key)
        names = value if isinstance(value, list) else [value]
        bare = []
        for n in names:
            agent, hive = split(n) if isinstance(n, str) else (n, None)
            if hive is not None:
                hives.add(validate_hive_name(hive))
            bare.append(agent)
        if key in args:
            args[key] = bare if isinstance(value, list) else bare[0]
    if len(hives) > 1:
        raise WireError("bad_request", f"one hive per request, not {', '.join(sorted(hives))}")
    hive = hives.pop() if hives else None
    return (None if hive in (None, _own(ctx)) else hive), args


async def _ask_remote(ctx: HiveContext, hive: str, op: str, args: dict[str, Any]) -> Any:
    import nats.errors

    subject = control_subject(hive, _own(ctx))
    data = packb({"op": op, "args": args})
    try:
        raw = await _request(ctx, subject, data)
    except nats.errors.NoRespondersError:
        if hive in ctx.federation.fleet:
            raise WireError(
                "hive_unreachable", f"hive '{hive}' is in the federation but does not answer"
            ) from None
        raise WireError("unknown_hive", f"no hive named '{hive}' in the federation") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise WireError("hive_timeout", f"hive '{hive}' did not answer within "
                        f"{REMOTE_TIMEOUT:g}s") from None  # fmt: skip
    except (ConnectionError, nats.errors.Error) as exc:
        raise WireError("nats_unavailable", f"cannot reach NATS: {exc}") from None
    return remote_result(hive, op, args, raw)  # checked: the other hive's reply is input


async def _request(ctx: HiveContext, subject: str, data: bytes) -> bytes:
    """A request over the link, awaited without a worker thread: a hive that does not
    answer holds nothing of this daemon's but the request itself (a worker thread held
    for REMOTE_TIMEOUT per call, many dashboard tabs polling a hung hive could take every
    thread the turns start with). Cancelled, the request is abandoned on the link."""
    future = ctx.federation.request_future(subject, data, REMOTE_TIMEOUT)
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    future.add_done_callback(lambda _: token.run_sync_soon(done.set))
    try:
        await done.wait()
    finally:
        future.cancel()  # a no-op once done
    return bytes(future.result().data)


def control_handler(ctx: HiveContext, api: AdminApi) -> Callable[..., None]:
    """What the link calls (on its thread) for an operator request from another hive."""

    def handle(origin: str, data: bytes, respond: Callable[[bytes], None]) -> None:
        ctx.io.spawn(_serve, ctx, api, origin, data, respond)

    return handle


async def _serve(
    ctx: HiveContext, api: AdminApi, origin: str, data: bytes, respond: Callable[[bytes], None]
) -> None:
    try:
        result = await _authorised_call(ctx, api, origin, data)
        reply = {"result": result}
    except WireError as exc:
        reply = {"error": {"code": exc.code, "message": exc.message}}
    except Exception as exc:  # this task runs in the daemon's nursery: never let it out
        log.exception("federation: operator request from %s failed", origin)
        reply = {"error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}}
    respond(packb(reply))


async def _authorised_call(ctx: HiveContext, api: AdminApi, origin: str, data: bytes) -> Any:
    fed = ctx.config.federation
    assert fed is not None
    if origin not in fed.operators and "*" not in fed.operators:
        raise WireError(
            "not_authorized",
            f"hive '{fed.name}' does not take operator requests from hive '{origin}' "
            "(its [federation] operators)",
        )
    try:
        request = unpackb(data)
        op, args = request["op"], request["args"]
    except Exception:
        raise WireError("bad_request", "not an operator request") from None
    if op not in REMOTE_VERBS or not isinstance(args, dict):
        raise WireError("not_remote", f"'{op}' cannot be asked of another hive")
    hive, local_args = _target(ctx, Request(0, op, args))
    if hive is not None:
        raise WireError("bad_request", f"hive '{fed.name}' acts only on its own agents")
    return await api.call(Request(0, op, local_args))
