"""The crossing from actor threads into the trio loop.

Actors never block on IO; they hand work to the trio thread through this bridge. Every
method is safe to call from any thread and returns at once. Work started here belongs to
the loop's nursery, so it is cancelled when the supervisor shuts down.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger(__name__)


class IoBridge:
    """The door from actor threads into the trio loop: calls, tasks and timers, all non-blocking."""

    def __init__(self, token: trio.lowlevel.TrioToken, nursery: trio.Nursery) -> None:
        self.token = token
        self.nursery = nursery
        self.closed = False
        # Calls from other threads queue here and are run by one wake-up of the loop:
        # under load, thousands of replies cost one cross-thread hop, not thousands.
        self._calls: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._wakeup_pending = False

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run a plain function on the trio thread (replies, channel sends), in order."""
        if self.closed:
            return
        with self._lock:
            self._calls.append((fn, args))
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        try:
            self.token.run_sync_soon(self._drain)
        except trio.RunFinishedError:
            self.closed = True

    def _drain(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, deque()
            self._wakeup_pending = False
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                log.exception("call from an actor failed on the IO thread")

    def spawn(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start a task in the loop's nursery."""
        self.call_soon(self._start, async_fn, args)

    def _start(self, async_fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
        try:
            self.nursery.start_soon(async_fn, *args)
        except RuntimeError:  # nursery closed: shutting down
            log.debug("dropped %s during shutdown", async_fn)

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        """Call ``fn()`` on the trio thread after ``delay`` seconds (timers for actors).
        The returned Timer calls it off."""
        timer = Timer(self)

        async def _timer() -> None:
            with trio.CancelScope() as scope:
                timer.scope = scope
                if timer.cancelled:
                    return
                await trio.sleep(max(0.0, delay))
                if not timer.cancelled:
                    fn()

        self.spawn(_timer)
        return timer


class Timer:
    """A pending ``call_later``. ``cancel()`` (from any thread) makes sure it never fires,
    and ends its sleeping task at once rather than when the delay is up."""

    def __init__(self, bridge: IoBridge) -> None:
        self.bridge = bridge
        self.cancelled = False
        self.scope: trio.CancelScope | None = None  # set on the trio thread

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.bridge.call_soon(self._end_task)

    def _end_task(self) -> None:
        if self.scope is not None:
            self.scope.cancel()
