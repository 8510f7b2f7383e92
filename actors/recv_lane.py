"""The recv lane: a committed message goes straight to a parked ``recv``, from the thread
that committed it, without a hop through its Agent actor first.

Each Agent offers its oldest parked recv here (one slot per agent). Right after a commit
the Store's thread (hive.actors.bus: ``_committed``) takes that recv, if there is one and
the new messages fit its reply frame, answers it, and only then tells the Agent, in the
same ``Arrived``, that those messages were handed to that recv: the Agent keeps them aside
(``unacked``) until the reader's ``ack``, exactly as if it had handed them over itself.
The delivery rule is unchanged: a message leaves ``pending`` only when acknowledged.

Who answers a parked recv is decided by one atomic step, ``dict.pop`` on its slot: the
Store's thread (``take``) or the Agent (``withdraw``, before a timeout, a hand-over of
its own, the end of a turn, its death) — never both. The Agent learns it lost the race
from ``withdraw`` and then waits for the ``Arrived`` that says where the messages went
(it is already in its mailbox: it was told before the reply left).

>>> lane, parked = RecvLane(), object()
>>> lane.offer("bob", parked)
>>> lane.withdraw("bob", parked)  # the Agent got it back: it answers it itself
True
>>> lane.offer("bob", parked)
>>> lane.take("bob", [], 1000)[0] is parked  # the committing thread took it first
True
>>> lane.withdraw("bob", parked)  # so the Agent must not answer it
False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hive.wire import Envelope, packb


class RecvLane:
    """One slot per agent: its oldest parked recv, offered to the committing thread."""

    def __init__(self) -> None:
        self._slots: dict[str, Any] = {}

    def offer(self, agent: str, recv: Any) -> None:
        """The Agent parks ``recv`` in its slot (only the Agent fills its own slot)."""
        self._slots[agent] = recv

    def withdraw(self, agent: str, recv: Any) -> bool:
        """The Agent takes ``recv`` back to answer it itself: False if the committing
        thread took it first (then it has been answered with messages)."""
        taken = self._slots.pop(agent, None)
        if taken is None:
            return False
        if taken is not recv:  # not the one in the slot: leave that one where it was
            self._slots[agent] = taken
        return True

    def take(self, agent: str, envs: Sequence[Envelope], budget: int) -> tuple[Any, list[Any]]:
        """From the committing thread: the agent's parked recv and the messages' wire
        form, if one is parked and they all fit ``budget`` bytes; else (None, [])."""
        if agent not in self._slots:
            return None, []
        wires = [env.to_wire() for env in envs]
        if sum(len(packb(w)) for w in wires) > budget:
            return None, []  # the Agent splits them over several replies
        return self._slots.pop(agent, None), wires
