"""The Admission actor: which agent's turn may start now, hive-wide.

Off unless ``[hive] max_concurrent_turns`` or ``memory_budget_mb`` is set (then Agents
start their turns without asking). When on, an Agent that wants a turn tells ``WantTurn``
and waits (its row shows ``queued`` and why) until it is told ``Admitted``; it tells
``TurnOver`` when that turn ends (or when it no longer wanted it).

Rules it keeps:
- One queue, fair: first come, first served, except that a turn carrying mail from the
  operator or the manager (``urgent``) goes before every other. Strict order: while the
  first turn in line cannot start, none behind it does (no small turn starves a big one).
- At most ``max_concurrent_turns`` turns run at once.
- Memory is measured, not guessed: every ``SAMPLE_SECONDS`` while turns run or wait, the
  IO side measures each agent's process trees in /proc (hive.io.memory). A turn is
  expected to need the largest tree any whole turn was seen to use (a turn counts once
  it has ended: a process measured only while it starts is far too small), less what
  its agent's tree holds already (a resident session); a running turn counts as the
  larger of that reservation and its measurement. Until a first turn has been measured
  to its end, turns are admitted one at a time. A turn whose need would take the
  measured total past ``memory_budget_mb`` waits.
- To make room, idle resident sessions are retired least recently used first (the Agent
  closes its session process: ``RetireSession``), those of agents with no turn waiting
  before those whose turn waits further back; never the first in line's own; only as
  many as it needs. A turn that cannot fit even with nothing else running is admitted alone, so an
  agent bigger than the budget still runs rather than waiting for ever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hive.actors.base import (
    HiveContext,
    InjectedFault,
    InjectFault,
    SupervisedActor,
    tell_quietly,
)

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.25  # how often memory is measured while turns run or wait
RETIRE_PATIENCE_SECONDS = 15.0  # a retirement not seen done by then is given up
RECOUNT_SECONDS = 5.0  # a restarted actor waits this long at most for the agents' answers
MIB = 1 << 20


# --- from Agents ----------------------------------------------------------------------


@dataclass(frozen=True)
class WantTurn:
    """The agent has a turn to play; ``urgent``: it carries operator or manager mail (told
    again, urgent, when such mail arrives while it waits). ``running``: it is playing
    one already (told to a restarted Admission actor)."""

    agent: str
    urgent: bool = False
    running: bool = False


@dataclass(frozen=True)
class Present:
    """The answer to AdmissionRestarted: whether the agent waits, or plays a turn."""

    agent: str
    waiting: bool = False
    urgent: bool = False
    running: bool = False


@dataclass(frozen=True)
class TurnOver:
    """The agent's admitted turn ended, or did not start after all."""

    agent: str


@dataclass(frozen=True)
class Forget:
    """The agent's actor (re)started or stopped: it holds no place and runs no turn."""

    agent: str


# --- to Agents ------------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    """Start your turn now (and tell TurnOver when it ends)."""


@dataclass(frozen=True)
class Queued:
    """Your turn waits: why (shown in the agent's row)."""

    reason: str


@dataclass(frozen=True)
class RetireSession:
    """Close your idle session process (its memory is needed); the conversation resumes
    in a new process at the next turn."""

    why: str


@dataclass(frozen=True)
class AdmissionRestarted:
    """The Admission actor restarted with nothing in its queue: say whether you wait or
    play a turn (``Present``)."""


@dataclass(frozen=True)
class Recount:
    """From the Supervisor to a restarted Admission actor: these agents were asked
    (AdmissionRestarted); admit nothing until each has answered, or ``RECOUNT_SECONDS``
    passed, so that no turn starts beside one the new actor has not heard of yet."""

    agents: tuple[str, ...]


# --- own ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A measurement: bytes resident in each agent's process trees (absent: none)."""

    rss: dict[str, int]


@dataclass(frozen=True)
class _Tick:
    pass


@dataclass(frozen=True)
class _RecountOver:
    pass


@dataclass
class _Waiting:
    urgent: bool
    seq: int
    since: float


@dataclass
class _Ledger:
    """What the actor knows of the hive's memory."""

    rss: dict[str, int] = field(default_factory=dict)  # the latest measurement
    peak: dict[str, int] = field(default_factory=dict)  # largest tree seen in a whole turn
    turn_peak: dict[str, int] = field(default_factory=dict)  # in the turn running now
    largest: int = 0  # the largest tree any measurement saw (in a turn or idle)
    unseen: set[str] = field(default_factory=set)  # admitted, in no measurement yet
    last_used: dict[str, float] = field(default_factory=dict)  # when its last turn ended
    retiring: dict[str, tuple[int, float]] = field(default_factory=dict)  # bytes, since


class AdmissionActor(SupervisedActor):
    """Admits turns under ``max_concurrent_turns`` and ``memory_budget_mb`` (module doc)."""

    child_id = "admission"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        self.max_turns = ctx.config.max_concurrent_turns
        self.budget = ctx.config.memory_budget_mb * MIB
        self.queue: dict[str, _Waiting] = {}
        self.running: dict[str, int] = {}  # agent -> bytes reserved when admitted
        self.told: dict[str, str] = {}  # the reason each waiting agent was last told
        self.mem = _Ledger()
        self.seq = 0
        self.sampling = False
        self.recount: set[str] = set()  # agents a restarted actor still waits to hear from
        self.stale = True  # turns ended since the last measurement

    def on_start(self) -> None:
        log.info(
            "admission: max_concurrent_turns=%s memory_budget_mb=%s",
            self.max_turns or "unlimited",
            self.budget // MIB or "unlimited",
        )

    def receive(self, message: Any) -> Any:
        match message:
            case WantTurn(agent=agent, urgent=urgent, running=running):
                self._want(agent, urgent, running)
            case Present(agent=agent, waiting=waiting, urgent=urgent, running=running):
                self.recount.discard(agent)
                if waiting or running:
                    self._want(agent, urgent, running)
            case Recount(agents=agents):
                self.recount = set(agents)
                me = self.actor_ref
                self.ctx.io.call_later(RECOUNT_SECONDS, lambda: tell_quietly(me, _RecountOver()))
            case _RecountOver():
                self.recount.clear()
            case TurnOver(agent=agent):
                if self.running.pop(agent, None) is not None:
                    self.mem.last_used[agent] = time.monotonic()
                    self.stale = True
                self._turn_measured(agent)
                self.mem.unseen.discard(agent)
            case Forget(agent=agent):
                self.recount.discard(agent)
                self.mem.turn_peak.pop(agent, None)
                self.mem.unseen.discard(agent)
                self.running.pop(agent, None)
                self.queue.pop(agent, None)
                self.told.pop(agent, None)
            case Usage(rss=rss):
                self.sampling = self.stale = False
                self._measured(rss)
            case _Tick():
                self._sample()
            case InjectFault():
                raise InjectedFault("fault injected into admission")
            case _:
                return None
        self._decide()
        self._keep_sampling()
        return None

    # --- the queue --------------------------------------------------------------------

    def _want(self, agent: str, urgent: bool, running: bool) -> None:
        if running:
            self.running[agent] = self._need(agent)
            return
        waiting = self.queue.get(agent)
        if waiting is not None:
            waiting.urgent = waiting.urgent or urgent  # keeps its place among its class
            return
        self.seq += 1
        self.queue[agent] = _Waiting(urgent, self.seq, time.monotonic())

    def _in_order(self) -> list[str]:
        return sorted(self.queue, key=lambda a: (not self.queue[a].urgent, self.queue[a].seq))

    def _decide(self) -> None:
        while self.queue and not self.recount:
            order = self._in_order()
            head = order[0]
            blocked = self._blocker(head)
            if blocked:
                self._tell_reasons(order, blocked)
                return
            del self.queue[head]
            self.told.pop(head, None)
            self.running[head] = self._need(head)
            if self.budget:
                self.mem.unseen.add(head)
            self.ctx.refs.tell(self.ctx.agent_ref_name(head), Admitted())

    def _tell_reasons(self, order: list[str], blocked: str) -> None:
        for position, agent in enumerate(order):
            reason = blocked if position == 0 else f"{position} turn(s) ahead in the queue"
            if self.told.get(agent) != reason:
                self.told[agent] = reason
                self.ctx.refs.tell(self.ctx.agent_ref_name(agent), Queued(reason))

    def _blocker(self, agent: str) -> str:
        """Why ``agent``'s turn cannot start now ("": it can)."""
        if self.max_turns and len(self.running) >= self.max_turns:
            return f"{len(self.running)} turns running (max_concurrent_turns = {self.max_turns})"
        if not self.budget:
            return ""
        if self._estimate(agent) is None and self.running:
            return "memory: waiting for a first turn to be measured"
        if self.stale:
            return "memory: measuring"  # a turn ended since: its session's size is news
        if self.mem.unseen:
            # A process measured only as it starts is far too small: admit no more until
            # the turns just admitted show in a measurement.
            return "memory: measuring the turns just started"
        used, need = self._used(), self._need(agent)
        if used + need <= self.budget:
            return ""
        if not self._retire_for(used + need - self.budget, agent) and not self.running:
            return ""  # nothing left to wait for: it runs alone
        return (
            f"memory: {used // MIB} MiB in use + {need // MIB} MiB for this turn > "
            f"memory_budget_mb = {self.budget // MIB}"
        )

    # --- memory -----------------------------------------------------------------------

    def _estimate(self, agent: str) -> int | None:
        """The largest tree any measurement saw, once a whole turn was measured (agents of
        one hive run the same CLI; a process measured only while it starts would be far
        too small, a resident session after its turn shows what one costs)."""
        if not self.mem.peak:
            return None
        return max(self.mem.largest, *self.mem.peak.values())

    def _turn_measured(self, agent: str) -> None:
        """A turn ended: the largest tree seen during it counts from now on."""
        peak = self.mem.turn_peak.pop(agent, 0)
        if peak:
            self.mem.peak[agent] = max(self.mem.peak.get(agent, 0), peak)

    def _need(self, agent: str) -> int:
        """What one more turn of ``agent`` adds to the measured total."""
        return max(0, (self._estimate(agent) or 0) - self.mem.rss.get(agent, 0))

    def _used(self) -> int:
        """The measured total, with what admitted turns reserved and not yet showed."""
        used = sum(self.mem.rss.values())
        for agent, reserved in self.running.items():
            used += max(0, reserved - self.mem.rss.get(agent, 0))
        return used

    def _measured(self, rss: dict[str, int]) -> None:
        self.mem.largest = max(self.mem.largest, *rss.values()) if rss else self.mem.largest
        self.mem.unseen -= rss.keys()
        for agent in self.running:
            if agent in rss:
                if agent not in self.mem.turn_peak:
                    log.info("admission: measuring %s's turn (%d MiB)", agent, rss[agent] // MIB)
                self.mem.turn_peak[agent] = max(self.mem.turn_peak.get(agent, 0), rss[agent])
        self.mem.rss = rss
        now = time.monotonic()
        for agent, (_, since) in list(self.mem.retiring.items()):
            if agent not in rss or now - since > RETIRE_PATIENCE_SECONDS:
                del self.mem.retiring[agent]

    def _retire_for(self, shortfall: int, head: str) -> bool:
        """Retire idle sessions, least recently used first (those of agents not waiting
        for a turn before those that wait), until ``shortfall`` bytes are on their way
        back; never ``head``'s own. False when nothing can be retired and none is being."""
        on_the_way = sum(size for size, _ in self.mem.retiring.values())
        idle = [
            a for a in self.mem.rss
            if a not in self.running and a != head and a not in self.mem.retiring
        ]  # fmt: skip
        idle.sort(key=lambda a: (a in self.queue, self.mem.last_used.get(a, 0.0)))
        for agent in idle:
            if on_the_way >= shortfall:
                break
            size = self.mem.rss[agent]
            self.mem.retiring[agent] = (size, time.monotonic())
            on_the_way += size
            why = f"its {size // MIB} MiB are needed for a queued turn (least recently used)"
            self.ctx.refs.tell(self.ctx.agent_ref_name(agent), RetireSession(why))
            log.info("admission: retiring %s's idle session: %s", agent, why)
        return bool(self.mem.retiring)

    def _keep_sampling(self) -> None:
        """Measure while turns run or wait (the peaks, the room); not while all is quiet."""
        if not self.budget or self.sampling or not (self.running or self.queue):
            return
        self.sampling = True
        me = self.actor_ref
        delay = 0.0 if self.stale else SAMPLE_SECONDS  # old figures: measure at once
        self.ctx.io.call_later(delay, lambda: tell_quietly(me, _Tick()))

    def _sample(self) -> None:
        me = self.actor_ref
        self.ctx.services.turns.sample_memory(lambda rss: tell_quietly(me, Usage(rss)))
