"""The daemon's start and stop: prepare the state dir, start the actor tree and the IO loop,
serve until a signal, and shut down without losing anything acknowledged.

Everything the daemon runs is composed here, in the open: the supervision tree
(``supervision_tree``), the admin verbs and the agent-socket ops (their tables, given to
the sockets), and the dashboard. Nothing registers itself at import time.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pykka
import trio

from hive.config import HiveConfig, stored_agent_config
from hive.process import AgentPaths
from hive.sdnotify import notify, watchdog_interval
from hive.store import IdAllocator, Queries, Reader, connect, migrate
from hive.store.retention import MailCount, OperatorMailbox, operator_mail

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.actors.supervisor import ChildSpec, KnownAgents
    from hive.io.bridge import IoBridge

log = logging.getLogger(__name__)

ACTOR_STACK_BYTES = 256 * 1024
GC_YOUNG_THRESHOLD = 20_000  # default 700 (Python 3.11)


@dataclass
class Boot:
    """What the daemon reads from the database before the actors start."""

    state: Any  # actors.supervisor.BootState
    max_message_id: int
    max_turn_id: int
    operator_mail: MailCount = field(default_factory=MailCount)


def prepare_state(cfg: HiveConfig) -> Boot:
    """Create directories, migrate the db, record hive.toml's agents, and read back
    everything the actors start from. Runs before any actor or socket exists."""
    from hive.actors.supervisor import BootState

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.sockets_dir / "agents").mkdir(parents=True, exist_ok=True)
    conn = connect(cfg.db_path, synchronous=cfg.sqlite_synchronous.upper())
    try:
        migrate(conn)
        q = Queries(conn)
        with conn:
            for a in cfg.agents:
                q.upsert_agent(a.name, a.parent, a.to_dict(), a.model)
        state = BootState()
        for row in q.agents():
            agent_cfg, refused = stored_agent_config(row.name, row.config)
            if refused:
                log.error(
                    "stored agent %s: env %s dropped (may not be set; see docs/security.md)",
                    row.name, ", ".join(refused),
                )  # fmt: skip
            AgentPaths.for_agent(row.name, cfg.state_dir, cfg.sockets_dir).ensure()
            state.agents.append((agent_cfg, row))
        for env in q.all_pending():
            state.pending.setdefault(env.to, []).append(env)
        state.last_turns = q.last_turns()
        return Boot(state, q.max_id("messages"), q.max_id("turns"), operator_mail(q))
    finally:
        conn.close()


def supervision_tree(ctx: HiveContext, known_agents: KnownAgents) -> list[ChildSpec]:
    """The actor tree under the Supervisor, in start order (stopped in reverse). Every
    child is permanent, one_for_one, within [hive] tree_intensity restarts per
    tree_period seconds. The agents follow, one child each (SupervisorActor.agent_spec):
    they are added and removed while the hive runs."""
    from hive.actors.admission import AdmissionActor
    from hive.actors.approvals import ApprovalsActor
    from hive.actors.bus import BusActor
    from hive.actors.hub import StateHubActor
    from hive.actors.stats import StatsActor
    from hive.actors.store import StoreActor
    from hive.actors.supervisor import ChildSpec

    return [
        ChildSpec("store", lambda: StoreActor.start(ctx)),
        ChildSpec("hub", lambda: StateHubActor.start(ctx)),
        # A restarted Bus learns every agent that exists now, not at boot.
        ChildSpec("bus", lambda: BusActor.start(ctx, known_agents())),
        ChildSpec("stats", lambda: StatsActor.start(ctx)),
        ChildSpec("approvals", lambda: ApprovalsActor.start(ctx)),
        # Which turn may start now, under [hive] max_concurrent_turns / memory_budget_mb.
        ChildSpec("admission", lambda: AdmissionActor.start(ctx)),
    ]


async def run_hive(
    cfg: HiveConfig,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    stop: trio.Event | None = None,
) -> int:
    """Run the hive until SIGTERM/SIGINT (or ``stop``). Returns the process exit code."""
    from hive.actors.supervisor import SupervisorActor
    from hive.io.bridge import IoBridge
    from hive.ui.server import start_dashboard, stop_dashboard

    boot = prepare_state(cfg)
    stop = stop if stop is not None else trio.Event()
    exit_code = 0
    threading.stack_size(ACTOR_STACK_BYTES)

    def escalate(reason: str) -> None:
        nonlocal exit_code
        exit_code = 1
        bridge.call_soon(stop.set)

    async with trio.open_nursery() as nursery:
        bridge = IoBridge(trio.lowlevel.current_trio_token(), nursery)
        ctx = _context(cfg, boot, bridge)
        services = ctx.services
        supervisor: pykka.ActorRef[Any] | None = None
        try:
            for agent_cfg, _ in boot.state.agents:
                await nursery.start(services.agent_sockets.serve, agent_cfg.name)
            supervisor = SupervisorActor.start(ctx, boot.state, escalate, supervision_tree)
            # The admin socket opens once the tree is up: a kick in the first millisecond
            # must find its agent. (A blocking wait, so it runs off the trio thread.)
            await trio.to_thread.run_sync(_wait_started, supervisor)
            await nursery.start(services.admin.serve)
            # Everything built at boot lives as long as the daemon: move it out of the
            # collector's sight, and collect young objects less often. Each collection
            # stops every thread; these are the pauses that showed in message latency.
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
            await start_dashboard(ctx, nursery)  # if [hive] dashboard is on
            notify("READY=1")
            nursery.start_soon(_watchdog, ctx)
            task_status.started(ctx)
            await _until_stopped(stop)
            log.info("shutting down")
            notify("STOPPING=1")
            await stop_dashboard(ctx)
        finally:
            with trio.CancelScope(shield=True):
                # Actors stop on a worker thread: stopping waits for their threads, and
                # the trio loop must keep running to take their last calls meanwhile.
                await trio.to_thread.run_sync(_stop_actors, supervisor)
            bridge.closed = True
            nursery.cancel_scope.cancel()
    return exit_code


def _context(cfg: HiveConfig, boot: Boot, bridge: IoBridge) -> HiveContext:
    """The hive's context, with its IO services given the admin verbs and the agent-socket
    ops (their tables)."""
    from hive.actors.base import HiveContext
    from hive.control.admin_api import AdminApi
    from hive.control.admin_verbs import verb_table
    from hive.control.agent_ops import op_table
    from hive.io.services import IoServices

    services = IoServices(bridge, Reader(cfg.db_path))
    ctx = HiveContext(
        config=cfg,
        io=bridge,
        services=services,
        message_ids=IdAllocator(boot.max_message_id + 1),
        turn_ids=IdAllocator(boot.max_turn_id + 1),
        operator_mailbox=OperatorMailbox(
            cfg.operator_mailbox_cap,
            cfg.operator_mailbox_bytes,
            cfg.operator_mail_per_sender,
            boot.operator_mail,
        ),
    )
    # The fault-injection verb exists only in a daemon started for supervision tests.
    verbs = verb_table(fault_injection=os.environ.get("HIVE_FAULT_INJECTION") == "1")
    services.attach(ctx, AdminApi(ctx, verbs), op_table())
    return ctx


async def _until_stopped(stop: trio.Event) -> None:
    """Until SIGTERM, SIGINT or ``stop``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as waiters:
            waiters.start_soon(_first_signal, signals, stop)
            await stop.wait()
            waiters.cancel_scope.cancel()


async def _first_signal(signals: Any, stop: trio.Event) -> None:
    async for signum in signals:
        log.info("received signal %s", signal.Signals(signum).name)
        stop.set()
        return


def _wait_started(supervisor: pykka.ActorRef[Any]) -> None:
    from hive.actors.supervisor import Ping

    done = threading.Event()
    supervisor.tell(Ping(done.set))
    if not done.wait(60):
        raise RuntimeError("the actor tree did not start within 60 s")


def _stop_actors(supervisor: pykka.ActorRef[Any] | None) -> None:
    try:
        if supervisor is not None:
            supervisor.stop(block=True, timeout=60)
    except (pykka.ActorDeadError, pykka.Timeout):
        pass
    finally:
        pykka.ActorRegistry.stop_all(block=True, timeout=30)


async def _watchdog(ctx: Any) -> None:
    """Ping systemd's watchdog only while the loop and the actor tree both answer, so a hung
    daemon is restarted rather than kept alive by a timer."""
    from hive.actors.supervisor import Ping

    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        answered = trio.Event()
        ctx.refs.tell("supervisor", Ping(partial(ctx.io.call_soon, answered.set)))
        with trio.move_on_after(interval):
            await answered.wait()
            notify("WATCHDOG=1")
        await trio.sleep(interval)
