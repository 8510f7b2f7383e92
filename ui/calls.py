"""How the dashboard's request handlers (on the trio thread) talk to the actors.

Never a blocking ``ask()``: a handler tells the actor a message carrying a reply callback;
the callback hops back to the trio thread (``ctx.io.call_soon``) and wakes the handler.
Admin verbs registered by other layers (approve, deny, answer, model, ...) are called the
same way through a stand-in connection, so the dashboard and hivectl share one code path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from hive.wire import Request, WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

ASK_TIMEOUT = 15.0

# WireError codes -> HTTP status
_STATUS = {
    "bad_request": 400,
    "invalid_name": 400,
    "empty_scope": 400,
    "body_too_large": 413,
    "unknown_agent": 404,
    "not_found": 404,
    "unknown_op": 501,
    "not_allowed": 403,
    "forbidden": 403,
    "rate_limited": 429,
    "unavailable": 503,
    "store_failed": 503,
    "conflict": 409,
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


class _Waiter:
    """One pending reply: set from any thread, awaited on the trio thread."""

    def __init__(self, ctx: HiveContext) -> None:
        self.ctx = ctx
        self.event = trio.Event()
        self.value: Any = None

    def reply(self, value: Any) -> None:
        self.ctx.io.call_soon(self._set, value)

    def _set(self, value: Any) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()

    async def wait(self, what: str, timeout: float) -> Any:
        with trio.move_on_after(timeout):
            await self.event.wait()
            if isinstance(self.value, WireError):
                raise ApiError.from_wire(self.value)
            return self.value
        raise ApiError(504, "timeout", f"{what} did not answer within {timeout:g} s")


async def ask(
    ctx: HiveContext,
    target: str,
    make: Callable[[Callable[[Any], None]], object],
    timeout: float = ASK_TIMEOUT,
) -> Any:
    """Tell ``target`` the message ``make(reply)`` and wait for the reply, on trio."""
    waiter = _Waiter(ctx)
    if not ctx.refs.tell(target, make(waiter.reply)):
        if target.startswith("agent:"):
            name = target.removeprefix("agent:")
            raise ApiError(404, "unknown_agent", f"no agent named '{name}'")
        raise ApiError(503, "unavailable", f"{target} is not running (restarting?)")
    return await waiter.wait(target, timeout)


_verb_ids = itertools.count(1)


class _VerbConnection:
    """Quacks like hive.io.frames.Connection for one request: keeps the reply."""

    def __init__(self, waiter: _Waiter) -> None:
        self.waiter = waiter
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        self.peer = "dashboard"

    def reply(self, req_id: int, result: Any) -> None:
        self.waiter._set(result)

    def reply_threadsafe(self, req_id: int, result: Any) -> None:
        self.waiter.reply(result)

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Pushes belong to long-lived admin connections; a one-shot call drops them."""


def has_verb(op: str) -> bool:
    from hive.io.admin_socket import VERBS

    return op in VERBS


async def call_verb(
    ctx: HiveContext, op: str, args: dict[str, Any], timeout: float = ASK_TIMEOUT
) -> Any:
    """Run the admin verb ``op`` as hivectl would, and return its result."""
    from hive.io.admin_socket import VERBS

    fn = VERBS.get(op)
    if fn is None:
        raise ApiError(
            501, "not_available", f"'{op}' is not available in this hive (no such admin verb)"
        )
    waiter = _Waiter(ctx)
    conn = _VerbConnection(waiter)
    try:
        result = fn(ctx.services.admin, conn, Request(next(_verb_ids), op, args))  # type: ignore[arg-type]
        if hasattr(result, "__await__"):
            await result
    except WireError as exc:
        raise ApiError.from_wire(exc) from exc
    try:
        return await waiter.wait(f"'{op}'", timeout)
    finally:
        for cb in conn.on_close:
            cb()
