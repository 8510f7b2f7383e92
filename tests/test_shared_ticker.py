"""The SharedTicker behind the agents' delayed depth publishes: many actors, one timer.

A timer of the IO bridge is a trio task on the IO thread; one per agent, re-armed every
50 ms by a busy fleet, kept that thread busy with timers alone. Real pykka actors and a
real IoBridge on trio here: a thousand adds between two ticks arm one timer, every actor
is told once, and an actor that stopped meanwhile is skipped."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import trio

from hive.actors.base import SharedTicker
from hive.io.bridge import IoBridge


class Counter(pykka.ThreadingActor):
    def __init__(self, seen: list[Any], lock: threading.Lock) -> None:
        super().__init__()
        self.seen, self.lock = seen, lock

    def on_receive(self, message: Any) -> None:
        with self.lock:
            self.seen.append((self.actor_ref, message))


def test_a_thousand_adds_between_ticks_arm_one_timer_and_tell_each_once() -> None:
    seen: list[Any] = []
    lock = threading.Lock()
    refs = [Counter.start(seen, lock) for _ in range(1000)]
    ticker = SharedTicker(0.05)
    timers: list[object] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            io = IoBridge(trio.lowlevel.current_trio_token(), nursery)
            arm = io.call_later

            def counted(delay: float, fn: Any) -> Any:
                timers.append(fn)
                return arm(delay, fn)

            io.call_later = counted  # type: ignore[method-assign]
            refs[-1].stop()  # told nothing: it stopped before the tick
            for i, ref in enumerate(refs):
                ticker.add(io, ref, ("due", i))
            with trio.fail_after(30):
                while True:
                    with lock:
                        if len(seen) == len(refs) - 1:
                            break
                    await trio.sleep(0.01)
            # The next add after the tick arms the next timer.
            ticker.add(io, refs[0], ("again", 0))
            with trio.fail_after(30):
                while len(seen) < len(refs):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        for ref in refs:
            ref.stop()  # False for the one already stopped
    assert len(timers) == 2
    told = [message for _, message in seen]
    assert sorted(told[:-1]) == sorted(("due", i) for i in range(len(refs) - 1))
    assert told[-1] == ("again", 0)
