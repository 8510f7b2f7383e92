"""Waiting for an actor's answer on the trio thread, and running a request's async work.

Never a blocking ``ask()`` here: the actor gets a message carrying a reply callback, the
callback hops back to the trio thread and wakes the waiting task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from hive.wire import Request, WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.io.frames import Connection

log = logging.getLogger(__name__)

ASK_TIMEOUT = 60.0


async def ask_actor(
    ctx: HiveContext,
    target: str,
    make: Callable[[Callable[[Any], None]], object],
    timeout: float = ASK_TIMEOUT,
) -> Any:
    """Tell ``target`` the message ``make(reply)``; return what it replies (a WireError
    reply is raised)."""
    done = trio.Event()
    box: list[Any] = []

    def settle(value: Any) -> None:
        if not done.is_set():
            box.append(value)
            done.set()

    def reply(value: Any) -> None:
        ctx.io.call_soon(settle, value)

    if not ctx.refs.tell(target, make(reply)):
        if target.startswith("agent:"):
            raise WireError("unknown_agent", f"no agent named '{target.removeprefix('agent:')}'")
        raise WireError("unavailable", f"{target} is not running right now; try again")
    with trio.move_on_after(timeout):
        await done.wait()
    if not box:
        raise WireError("timeout", f"{target} did not answer within {timeout:g} s")
    if isinstance(box[0], WireError):
        raise box[0]
    return box[0]


def run_request(
    ctx: HiveContext, conn: Connection, req: Request, work: Callable[[], Awaitable[Any]]
) -> None:
    """Run ``work()`` in the IO nursery; its result (or error) completes the request.

    For socket handlers that must not hold up their connection's other requests."""

    async def task() -> None:
        try:
            result = await work()
        except WireError as exc:
            conn.reply(req.id, exc)
        except Exception as exc:  # never into the daemon's nursery
            log.exception("%s failed", req.op)
            conn.reply(req.id, WireError("internal", f"{req.op} failed: {exc}"))
        else:
            conn.reply(req.id, result)

    ctx.io.spawn(task)
