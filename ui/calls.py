"""How the dashboard's request handlers (on the trio thread) talk to the hive.

Anything the operator does goes through the admin API (``call_verb``): the same verb
functions hivectl reaches through the admin socket, with the same checks and error codes.
Reads of the hub's snapshot use ``ask``, the control plane's one ask helper. WireError
codes become HTTP statuses here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from hive.control.calls import ask_actor
from hive.wire import WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

log = logging.getLogger(__name__)

ASK_TIMEOUT = 15.0

# WireError codes -> HTTP status
_STATUS = {
    "bad_request": 400,
    "invalid_name": 400,
    "unknown_model": 400,
    "empty_scope": 400,
    "body_too_large": 413,
    "unknown_agent": 404,
    "not_found": 404,
    "unknown_op": 501,
    "not_allowed": 403,
    "forbidden": 403,
    "needs_root": 403,
    "rate_limited": 429,
    "unavailable": 503,
    "store_failed": 503,
    "no_resources": 503,
    "conflict": 409,
    "timeout": 504,
    "not_federated": 400,
    "not_remote": 400,
    "unknown_hive": 404,
    "not_authorized": 403,
    "hive_unreachable": 503,
    "hive_timeout": 504,
    "nats_unavailable": 503,
    "bad_reply": 502,  # another hive answered something that is not a hive's reply
}


class ApiError(Exception):
    """An error answered as JSON: ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_wire(cls, exc: WireError) -> ApiError:
        return cls(_STATUS.get(exc.code, 409), exc.code, exc.message)

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


async def ask(
    ctx: HiveContext,
    target: str,
    make: Callable[[Callable[[Any], None]], object],
    timeout: float = ASK_TIMEOUT,
) -> Any:
    """Tell ``target`` the message ``make(reply)`` and wait for the reply, on trio: the
    control plane's ``ask_actor``, its WireError answered as an HTTP error."""
    try:
        return await ask_actor(ctx, target, make, timeout)
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


def has_verb(ctx: HiveContext, op: str) -> bool:
    return ctx.services.admin.api.knows(op)


async def call_verb(
    ctx: HiveContext, op: str, args: dict[str, Any], timeout: float = ASK_TIMEOUT
) -> Any:
    """Run the admin verb ``op`` as hivectl would (the same function, the same checks),
    and return its result. Past ``timeout`` the handler answers 504; the verb itself runs
    on to its end in the daemon's nursery, as it would for a hivectl that went away."""
    api = ctx.services.admin.api
    done = trio.Event()
    box: list[Any] = []

    async def run() -> None:
        try:
            box.append(await api.call_op(op, args))
        except WireError as exc:
            box.append(exc)
        except Exception as exc:  # never into the daemon's nursery
            log.exception("dashboard: %s failed", op)
            box.append(WireError("internal", f"{op} failed: {exc}"))
        done.set()

    ctx.io.nursery.start_soon(run)
    with trio.move_on_after(timeout):
        await done.wait()
    if not box:
        raise ApiError(504, "timeout", f"'{op}' did not answer within {timeout:g} s")
    if isinstance(box[0], WireError):
        raise ApiError.from_wire(box[0])
    return box[0]


def one_agent(result: dict[str, Any], name: str) -> Any:
    """The result for ``name`` out of a lifecycle verb's ``{"agents": {...}}`` reply; its
    error raised."""
    mine = result["agents"][name]
    if isinstance(mine, dict) and isinstance(mine.get("error"), dict):
        error = mine["error"]
        raise ApiError.from_wire(WireError(str(error.get("code")), str(error.get("message"))))
    return mine
