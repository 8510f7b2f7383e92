"""What every hive actor shares: the hive context, the directory of actor refs, and the
hook that reports a dying actor to its supervisor."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pykka

from hive.actors.recv_lane import RecvLane
from hive.config import HiveConfig
from hive.spend import SpendLedger
from hive.store import IdAllocator

if TYPE_CHECKING:
    from hive.io.bridge import IoBridge
    from hive.io.services import IoServices

log = logging.getLogger(__name__)


class Directory:
    """Current actor refs by name ('store', 'bus', 'hub', 'agent:bob', ...).

    Restarted actors get new refs; callers look them up at each tell, so a restart is
    invisible to them except for messages sent while the actor was down.
    """

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._lock = threading.Lock()

    def set(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._refs[name] = ref

    def remove(self, name: str) -> None:
        with self._lock:
            self._refs.pop(name, None)

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            return self._refs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._refs)

    def tell(self, name: str, message: object) -> bool:
        """Tell the named actor; False if it is not running (the caller decides what then)."""
        ref = self.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True


def tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    """Tell an actor that may have stopped meanwhile (callbacks from IO and the store).

    A stopped actor's state is rebuilt from the store by its successor, so a report meant
    for it is dropped, not raised into the thread that happened to deliver it."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        log.debug("dropped %s for a stopped actor", type(message).__name__)


class CommitClock:
    """Counts the Store's committed transactions, across Store restarts.

    The Store is the only writer, so its transactions are totally ordered: a transaction
    reads ``open`` to learn the number it commits as, and a read on the Store's thread
    sees exactly the transactions numbered up to ``committed``. A notice sent after a
    commit carries that commit's number; whoever loaded its state in a read that saw
    that number already has the change, and drops the notice. Touched only on the
    Store's thread (ints are swapped whole, so other threads may read a stale value,
    never a torn one)."""

    def __init__(self) -> None:
        self.committed = 0

    @property
    def open(self) -> int:
        """The number the transaction now running will commit as."""
        return self.committed + 1


class SharedTicker:
    """One timer for many actors: each ref ``add``ed is told its message once, at the next
    tick, ``period`` seconds after the first ``add`` since the last tick. A timer of the
    IO bridge is a trio task on the IO thread; one per actor, re-armed by a busy fleet
    (a thousand agents, each publishing its inbox depth at most every 50 ms), would keep
    that thread busy with timers alone."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._lock = threading.Lock()  # actors add from their own threads
        self._due: list[tuple[Any, object]] = []
        self._armed = False

    def add(self, io: IoBridge, ref: Any, message: object) -> None:
        with self._lock:
            self._due.append((ref, message))
            if self._armed:
                return
            self._armed = True
        io.call_later(self.period, self._tick)

    def _tick(self) -> None:
        with self._lock:
            due, self._due, self._armed = self._due, [], False
        for ref, message in due:
            tell_quietly(ref, message)


# How often an agent's row is published for a change of its inbox depth alone (the Agent
# actor's _mark_depth): 20 times a second is live enough for a dashboard and hivectl.
DEPTH_PUBLISH_SECONDS = 0.05


@dataclass
class HiveContext:
    """Everything an actor may reach: settings, id allocators, other actors, the IO side."""

    config: HiveConfig
    io: IoBridge
    services: IoServices
    message_ids: IdAllocator
    turn_ids: IdAllocator
    refs: Directory = field(default_factory=Directory)
    commits: CommitClock = field(default_factory=CommitClock)
    # Kinds some subscriber of the StateHub wants ("*": all), kept by the hub so that hot
    # paths (every message) skip publishing what nobody watches.
    hub_interest: frozenset[str] = frozenset()
    # The StateHub's subscribers live here, not in the hub, so that a restarted hub keeps
    # serving them (after telling each one it missed updates).
    hub_subscribers: dict[int, Any] = field(default_factory=dict)
    # The operator mailbox's caps and what it holds (hive.store.retention); None: no caps.
    operator_mailbox: Any = None
    # The NATS link (hive.federation.link.NatsLink) of a hive with [federation]; else None.
    federation: Any = None
    # Today's spend per agent and hive-wide, for the Agents' budget decisions (hive.spend).
    spend: SpendLedger = field(default_factory=SpendLedger)
    # Each agent's oldest parked recv, answered straight from the commit (hive.actors.recv_lane).
    recv_lane: RecvLane = field(default_factory=RecvLane)
    # The one timer behind every agent's delayed depth publish (AgentActor._mark_depth).
    depth_ticker: SharedTicker = field(default_factory=lambda: SharedTicker(DEPTH_PUBLISH_SECONDS))

    def agent_ref_name(self, agent: str) -> str:
        return f"agent:{agent}"


@dataclass(frozen=True)
class Alive:
    """Answered (via ask) once an actor's on_start has run: used at boot."""


@dataclass(frozen=True)
class Ping:
    """Call ``reply`` when the actor gets to it: its thread takes messages. The daemon's
    watchdog pings every actor of the tree this way before it tells systemd all is well."""

    reply: Callable[[], None]


@dataclass(frozen=True)
class InjectFault:
    """Makes the receiving actor raise (tests of supervision; see the inject_fault verb in
    hive.control.admin_verbs), or, with ``hang_seconds``, block its thread that long (tests
    of the watchdog: a hung actor must cost the daemon its systemd watchdog pings)."""

    hang_seconds: float = 0.0


class InjectedFault(RuntimeError):
    """The failure InjectFault asks for: an actor raising it is meant to die."""


@dataclass(frozen=True)
class ChildFailed:
    """A supervised actor died (from its ``on_failure``): the supervisor restarts it."""

    child_id: str
    error: str
    # Messages that were waiting in the dead actor's mailbox: the supervisor hands them
    # to its successor, so a request in flight is answered late rather than never.
    orphans: tuple[object, ...] = ()


@dataclass(frozen=True)
class Registered:
    """Sent by the Supervisor once a (re)started actor's ref is in the directory: from
    now on every tell meant for it reaches it, so it may catch up on what it missed
    while it was starting (an Agent reads the mail that arrived meanwhile)."""


@dataclass(frozen=True)
class Republish:
    """Publish your current state to the StateHub again (it restarted and lost it)."""


Reply = Callable[[Any], None]  # called once with a result or a WireError


class SupervisedActor(pykka.ThreadingActor):
    """An actor whose unexpected death is reported to the Supervisor actor."""

    child_id = "?"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__()
        self.ctx = ctx

    def on_receive(self, message: Any) -> Any:
        """Answer the watchdog's Ping here, for every actor of the tree (one that did not
        would cost the daemon its systemd watchdog pings, and so its life); everything
        else goes to the actor's own ``receive``."""
        if isinstance(message, Ping):
            message.reply()
            return None
        return self.receive(message)

    def receive(self, message: Any) -> Any:
        """Handle one message of this actor's own kinds (what pykka's on_receive would)."""
        raise NotImplementedError(f"{type(self).__name__} handles no messages")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        log.error("actor %s died: %r", self.child_id, exception_value)
        orphans = [*self.unfinished(), *self._drain_mailbox()]
        self.ctx.refs.tell(
            "supervisor", ChildFailed(self.child_id, repr(exception_value), tuple(orphans))
        )

    def injected(self, fault: InjectFault) -> None:
        """What an InjectFault asks for: raise (the actor dies), or hang its thread."""
        if fault.hang_seconds > 0:
            log.warning("actor %s: hanging for %g s (injected)", self.child_id, fault.hang_seconds)
            time.sleep(fault.hang_seconds)
            return
        raise InjectedFault(f"fault injected into {self.child_id}")

    def unfinished(self) -> list[object]:
        """Work accepted but not done when the actor died, as messages for its successor."""
        return []

    def _drain_mailbox(self) -> list[object]:
        out: list[object] = []
        # This thread is the inbox's only reader, so get() after a non-empty() never waits.
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            # pykka's own control messages (stop, ...) die with this actor.
            if type(message).__module__.startswith("hive."):
                out.append(message)
        return out
