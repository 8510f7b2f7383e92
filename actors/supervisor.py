"""The Supervisor: the root of the actor tree, OTP-style.

Children are data (``ChildSpec``): the table of them is composed in one place,
``hive.daemon.supervision_tree``; the agents follow it, one child each. Started in table
order, stopped in reverse. Strategy one_for_one: a child that dies is restarted alone.
Restart intensity: at most ``intensity`` restarts in ``period`` seconds ([hive]
tree_intensity / tree_period in hive.toml); past that the supervisor gives up and asks
the process to exit non-zero, so systemd restarts the whole daemon from the database.

pykka has no supervision of its own: a child reports its death from ``on_failure``
(see SupervisedActor) and the supervisor acts on that report.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka

from hive.actors.admission import AdmissionRestarted, Recount
from hive.actors.agent import AgentActor, AgentState
from hive.actors.base import (
    Alive,
    ChildFailed,
    HiveContext,
    Ping,
    Registered,
    Reply,
    Republish,
    tell_quietly,
)
from hive.actors.bus import AgentGone, AgentKnown
from hive.actors.hub import Publish
from hive.actors.store import Write
from hive.config import AgentConfig
from hive.store import AgentRow, Queries
from hive.wire import Envelope, WireError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """One child of the supervisor: its id, how to start it, and what happens when it dies.

    ``restart``: a "permanent" child is started again (``on_restart`` runs first, to clean
    up after the dead one); a "temporary" one is only removed from the registry.

    >>> class Echo(pykka.ThreadingActor):
    ...     def on_receive(self, message: Any) -> Any:
    ...         return message
    >>> spec = ChildSpec("echo", Echo.start)
    >>> spec.restart
    'permanent'
    >>> ref = spec.start()
    >>> ref.ask("ping")
    'ping'
    >>> ref.stop()
    True
    """

    id: str
    start: Callable[[], pykka.ActorRef[Any]]
    restart: Literal["permanent", "temporary"] = "permanent"
    on_restart: Callable[[], None] | None = None


# The agents that exist now (a restarted Bus learns them, not the boot list).
KnownAgents = Callable[[], list[AgentConfig]]
# The table of children above the agents: hive.daemon.supervision_tree.
TreeTable = Callable[[HiveContext, KnownAgents], list[ChildSpec]]


@dataclass
class BootState:
    """What the database held when the daemon started."""

    agents: list[tuple[AgentConfig, AgentRow]] = field(default_factory=list)
    pending: dict[str, list[Envelope]] = field(default_factory=dict)
    last_turns: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class AddAgent:
    """Start an agent that is already in the store (spawned or reconfigured)."""

    config: AgentConfig
    reply: Reply | None = None


@dataclass(frozen=True)
class RemoveAgent:
    """Stop an agent and take it out of the tree (``hivectl destroy``)."""

    name: str
    reply: Reply | None = None


@dataclass(frozen=True)
class DestroyAgent:
    """Destroy an agent (``hivectl destroy``, the dashboard): its askers are answered, then
    it is removed (``RemoveAgent``). Replies as ``RemoveAgent`` does."""

    name: str
    reply: Reply | None = None


class SupervisorActor(pykka.ThreadingActor):
    """The root of the actor tree: starts the children in order and restarts the ones that die."""

    def __init__(
        self,
        ctx: HiveContext,
        boot: BootState,
        escalate: Callable[[str], None],
        tree: TreeTable,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.boot = boot
        self.escalate = escalate
        self.tree = tree
        self.intensity = ctx.config.tree_intensity
        self.period = ctx.config.tree_period
        self.specs: dict[str, ChildSpec] = {}
        self.order: list[str] = []
        self.restarts: deque[float] = deque()
        self.gave_up = False
        self.agent_configs: dict[str, AgentConfig] = {}

    # --- the agents' rows of the tree ----------------------------------------------------

    def known_agents(self) -> list[AgentConfig]:
        return list(self.agent_configs.values())

    def agent_spec(self, cfg: AgentConfig, initial: AgentState | None) -> ChildSpec:
        ctx = self.ctx
        first = [initial]

        def start() -> pykka.ActorRef[Any]:
            # Boot state is used once; a restarted actor reloads from the store.
            state, first[0] = first[0], None
            return AgentActor.start(ctx, cfg, state)

        return ChildSpec(
            ctx.agent_ref_name(cfg.name),
            start,
            on_restart=lambda: ctx.services.turns.cancel(cfg.name),
        )

    # --- lifecycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        self.ctx.refs.set("supervisor", self.actor_ref)
        self.agent_configs = {cfg.name: cfg for cfg, _ in self.boot.agents}
        for spec in self.tree(self.ctx, self.known_agents):
            self._add_child(spec)
        for cfg, row in self.boot.agents:
            state = AgentState(
                row, self.boot.pending.get(cfg.name, []), self.boot.last_turns.get(cfg.name)
            )
            self._add_child(self.agent_spec(cfg, state))
        self.boot = BootState()  # let the boot snapshot go
        # Boot is done when every agent has run on_start (loaded, published its row):
        # only then does the daemon open its admin socket and report READY.
        for child_id in self.order:
            ref = self.ctx.refs.get(child_id)
            if ref is not None and child_id.startswith("agent:"):
                try:
                    ref.ask(Alive(), timeout=30)
                except (pykka.ActorDeadError, pykka.Timeout):
                    log.error("supervisor: %s did not start", child_id)

    def on_stop(self) -> None:
        for child_id in reversed(self.order):
            self._stop_child(child_id)

    def _add_child(self, spec: ChildSpec) -> None:
        self.specs[spec.id] = spec
        self.order.append(spec.id)
        self._register(spec.id, spec.start())

    def _register(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        self.ctx.refs.set(child_id, ref)
        if child_id.startswith("agent:"):
            # Mail committed while the agent started was told to no one: it catches up.
            ref.tell(Registered())

    def _stop_child(self, child_id: str) -> None:
        ref = self.ctx.refs.get(child_id)
        self.ctx.refs.remove(child_id)
        if ref is not None:
            try:
                ref.stop(block=True, timeout=30)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass

    # --- messages ------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case ChildFailed(child_id=child_id, error=error, orphans=orphans):
                self._child_failed(child_id, error, orphans)
            case AddAgent(config=cfg, reply=reply):
                self._add_agent(cfg, reply)
            case RemoveAgent(name=name, reply=reply):
                self._remove_agent(name, reply)
            case DestroyAgent(name=name, reply=reply):
                self._destroy_agent(name, reply)
            case Ping(reply=reply):
                reply()
            case _:
                log.warning("supervisor: unexpected message %r", message)
        return None

    def _child_failed(self, child_id: str, error: str, orphans: tuple[object, ...] = ()) -> None:
        spec = self.specs.get(child_id)
        if spec is None or self.gave_up:
            return
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.period:
            self.restarts.popleft()
        if len(self.restarts) > self.intensity:
            self.gave_up = True
            reason = (
                f"{len(self.restarts)} actor restarts in {self.period:g} s (last: {child_id}: "
                f"{error}); restarting the daemon"
            )
            log.critical("supervisor: %s", reason)
            self.escalate(reason)
            return
        if spec.restart == "temporary":
            self.ctx.refs.remove(child_id)
            return
        log.warning("supervisor: restarting %s after %s", child_id, error)
        if spec.on_restart is not None:
            spec.on_restart()
        ref = spec.start()
        self._register(child_id, ref)
        if child_id == "admission":
            self._recount_admission(ref)
        for message in orphans:
            ref.tell(message)
        if child_id == "hub":
            # The hub's snapshot died with it: everyone who publishes state does it again.
            for other in self.order:
                if other not in ("store", "bus", "hub"):
                    self.ctx.refs.tell(other, Republish())

    def _recount_admission(self, ref: pykka.ActorRef[Any]) -> None:
        """A restarted Admission actor's queue died with its predecessor: every agent says
        whether it waits or plays a turn, and the new actor admits nothing (not even its
        predecessor's orphans) until it has heard them all."""
        agents = [other for other in self.order if other.startswith("agent:")]
        ref.tell(Recount(tuple(a.removeprefix("agent:") for a in agents)))
        for other in agents:
            self.ctx.refs.tell(other, AdmissionRestarted())

    def _add_agent(self, cfg: AgentConfig, reply: Reply | None) -> None:
        name = self.ctx.agent_ref_name(cfg.name)
        if name in self.specs:
            self._stop_child(name)
            self.order.remove(name)
        self.agent_configs[cfg.name] = cfg
        self.ctx.refs.tell("bus", AgentKnown(cfg))
        self.ctx.services.agent_sockets.add_threadsafe(cfg.name)
        self._add_child(self.agent_spec(cfg, None))
        if reply is not None:
            reply({"agent": cfg.name})

    def _destroy_agent(self, name: str, reply: Reply | None) -> None:
        """The order of a destroy: the agent's pending questions are withdrawn and their
        askers answered while its socket is open; the socket goes only after that."""
        from hive.actors.approvals import AgentDestroyed

        if self.ctx.agent_ref_name(name) not in self.specs:
            if reply is not None:
                reply(WireError("unknown_agent", f"no agent named '{name}'"))
            return
        me = self.actor_ref
        io = self.ctx.io

        def remove() -> None:  # trio thread
            tell_quietly(me, RemoveAgent(name, reply))

        def askers_answered(_: Any) -> None:  # approvals thread
            # The askers' replies were handed to the trio thread before this call: once
            # ``remove`` runs there (calls run in order), they sit in their connections'
            # queues, and the socket's removal writes queued replies before it closes.
            io.call_soon(remove)

        told = self.ctx.refs.tell("approvals", AgentDestroyed(name, askers_answered))
        if not told and reply is not None:
            reply(WireError("unavailable", "approvals is not running right now; try again"))

    def _remove_agent(self, name: str, reply: Reply | None) -> None:
        child = self.ctx.agent_ref_name(name)
        if child not in self.specs:
            if reply is not None:
                reply(WireError("unknown_agent", f"no agent named '{name}'"))
            return
        self._stop_child(child)
        self.specs.pop(child, None)
        self.order.remove(child)
        self.agent_configs.pop(name, None)
        self.ctx.refs.tell("bus", AgentGone(name))
        self.ctx.services.agent_sockets.remove_threadsafe(name)
        # A removed agent's persistent session process goes with it, not when it idles out.
        self.ctx.services.turns.close_session(name, "the agent was removed")
        self.ctx.refs.tell("hub", Publish("agent", name, None))

        def mark(q: Queries) -> None:
            q.set_agent_fields(name, destroyed=1)

        def marked(_: Any, error: BaseException | None) -> None:
            if reply is not None:
                reply(
                    WireError("store_failed", str(error))
                    if error
                    else {"agent": name, "removed": True}
                )

        self.ctx.refs.tell("store", Write(mark, marked))
