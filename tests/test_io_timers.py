"""Timers the actors set on the trio thread (hive.io.bridge.IoBridge.call_later) can be
called off: a cancelled timer never fires, and its task ends at once, not when the delay
is up (a recv answered after a second must not leave a 150 s sleeper behind)."""

from __future__ import annotations

import threading

import trio
import trio.testing

from hive.io.bridge import IoBridge


def test_a_cancelled_timer_never_fires_and_ends_its_task_at_once() -> None:
    fired: list[str] = []

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            bridge = IoBridge(trio.lowlevel.current_trio_token(), nursery)
            kept = bridge.call_later(5, lambda: fired.append("kept"))
            dropped = bridge.call_later(150, lambda: fired.append("dropped"))
            await trio.sleep(1)
            # Cancelled from another thread, as an actor does when its recv is answered.
            worker = threading.Thread(target=dropped.cancel)
            worker.start()
            await trio.to_thread.run_sync(worker.join)
            assert not kept.cancelled
        return trio.current_time()

    ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == ["kept"]
    assert ended < 150  # the nursery did not wait out the cancelled timer's sleep


def test_a_timer_cancelled_before_its_task_runs_never_fires() -> None:
    fired: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bridge = IoBridge(trio.lowlevel.current_trio_token(), nursery)
            bridge.call_later(0, lambda: fired.append("dropped")).cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == []
