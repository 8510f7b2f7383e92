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
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pykka
import trio

from hive import agentlog
from hive.config import HiveConfig, stored_agent_config
from hive.process import AgentPaths
from hive.sdnotify import notify, watchdog_interval
from hive.spend import SpendLedger
from hive.store import IdAllocator, Queries, Reader, connect, migrate
from hive.store.database import backup_before_migrating, schema_version
from hive.store.retention import MailCount, OperatorMailbox, operator_mail

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.actors.supervisor import ChildSpec, KnownAgents
    from hive.control.admin_api import AdminApi
    from hive.io.bridge import IoBridge

log = logging.getLogger(__name__)

ACTOR_STACK_BYTES = 256 * 1024
INTERRUPTED_TURN = "the supervisor stopped during this turn; its messages are delivered again"
GC_YOUNG_THRESHOLD = 20_000  # default 700 (Python 3.11)


@dataclass
class Boot:
    """What the daemon reads from the database before the actors start."""

    state: Any  # actors.supervisor.BootState
    max_message_id: int
    max_turn_id: int
    operator_mail: MailCount = field(default_factory=MailCount)


def _freeze_boot_objects() -> None:
    """Everything built at boot lives as long as the daemon: move it out of the collector's
    sight, and collect young objects less often. Each collection stops every thread; these
    are the pauses that showed in message latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def _preload_mcp_sdk(ctx: HiveContext) -> None:
    """The MCP SDK and hive's two servers, built in a worker thread while the hive starts,
    so that the first claude turn's tools do not wait 0.5-1 s for the imports. A failure
    is logged, not raised: it would take the daemon down, while the first MCP session
    tries again and reports it to its agent."""
    try:
        await ctx.services.agent_sockets.mcp_loaded()
    except Exception:
        log.exception("could not load the MCP SDK at start; the first MCP session tries again")


def prepare_state(cfg: HiveConfig) -> Boot:
    """Create directories, migrate the db, record hive.toml's agents, and read back
    everything the actors start from. Runs before any actor or socket exists."""
    from hive.actors.supervisor import BootState
    from hive.federation.store import begin_epoch
    from hive.statelock import lock_state_dir

    lock_state_dir(cfg.state_dir)  # hive-supervisor took it already; the demo takes it here
    (cfg.sockets_dir / "agents").mkdir(parents=True, exist_ok=True)
    conn = connect(cfg.db_path, synchronous=cfg.sqlite_synchronous.upper())
    try:
        _upgrade(conn, cfg)
        q = Queries(conn)
        with conn:
            for a in cfg.agents:
                q.upsert_agent(a.name, a.parent, a.to_dict(), a.model)
            cut = q.end_interrupted_turns(INTERRUPTED_TURN)
            begin_epoch(q)  # this start's run of numbers on every federation link
        if cut:
            log.warning("%d turn(s) left open by the previous run ended as cancelled", cut)
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


def _upgrade(conn: Any, cfg: HiveConfig) -> None:
    """Migrate a database written by an earlier hive, after a backup next to it (a newer
    one is refused by the pre-flight, and by ``migrate`` here too)."""
    before = schema_version(conn)
    backup = backup_before_migrating(conn, cfg.db_path)
    after = migrate(conn)
    if backup is not None:
        log.warning(
            "upgraded %s from schema v%d to v%d; the database as it was is kept at %s",
            cfg.db_path, before, after, backup,
        )  # fmt: skip


def supervision_tree(ctx: HiveContext, known_agents: KnownAgents) -> list[ChildSpec]:
    """The actor tree under the Supervisor, in start order (stopped in reverse). Every
    child is permanent, one_for_one, within [hive] tree_intensity restarts per
    tree_period seconds. The agents follow, one child each (SupervisorActor.agent_spec):
    they are added and removed while the hive runs."""
    from hive.actors.admission import AdmissionActor
    from hive.actors.approvals import ApprovalsActor
    from hive.actors.attention import AttentionActor
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
        ChildSpec("attention", lambda: AttentionActor.start(ctx)),
        # Which turn may start now, under [hive] max_concurrent_turns / memory_budget_mb.
        ChildSpec("admission", lambda: AdmissionActor.start(ctx)),
        *_federation_children(ctx),
    ]


def _federation_children(ctx: HiveContext) -> list[ChildSpec]:
    """With [federation]: the Forwarder (outbox -> JetStream) and the receiving actor."""
    if ctx.config.federation is None:
        return []
    from hive.actors.fed_inbox import FederationInboxActor
    from hive.actors.forwarder import ForwarderActor
    from hive.actors.supervisor import ChildSpec

    return [
        ChildSpec("forwarder", lambda: ForwarderActor.start(ctx)),
        ChildSpec("fed_inbox", lambda: FederationInboxActor.start(ctx)),
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
    agentlog.attach(cfg)  # hive's notes on an agent in its agent.log (where no journald)
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
            _freeze_boot_objects()
            await start_dashboard(ctx, nursery)  # if [hive] dashboard is on
            if any(a.runtime == "claude" for a, _ in boot.state.agents):
                nursery.start_soon(_preload_mcp_sdk, ctx)
            status = ready_status(cfg, len(boot.state.agents))
            notify(f"READY=1\nSTATUS={status}")
            nursery.start_soon(_watchdog, ctx, status)
            task_status.started(ctx)
            await _until_stopped(stop)
            log.info("shutting down")
            notify("STOPPING=1\nSTATUS=stopping: cancelling turns")
            await stop_dashboard(ctx)
        finally:
            with trio.CancelScope(shield=True):
                # Actors stop on a worker thread: stopping waits for their threads, and
                # the trio loop must keep running to take their last calls meanwhile.
                await trio.to_thread.run_sync(_stop_actors, supervisor)
                await trio.to_thread.run_sync(_stop_federation, ctx)  # nothing publishes now
            bridge.closed = True
            nursery.cancel_scope.cancel()
            agentlog.detach()
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
    spend = SpendLedger()
    conn = connect(cfg.db_path, readonly=True)
    try:
        spend.load(Queries(conn), time.time())  # today's spend: budgets hold over a restart
    finally:
        conn.close()
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
        spend=spend,
    )
    # The fault-injection verb exists only in a daemon started for supervision tests.
    verbs = verb_table(fault_injection=os.environ.get("HIVE_FAULT_INJECTION") == "1")
    if cfg.federation is not None:  # list shows the fleet; verbs reach other hives
        from hive.federation.fleet import remote_verb_table

        verbs = remote_verb_table(verbs)
    api = AdminApi(ctx, verbs)
    services.attach(ctx, api, op_table())
    if cfg.federation is not None:
        ctx.federation = _federation_link(ctx, api)
    return ctx


def _federation_link(ctx: HiveContext, api: AdminApi) -> Any:
    """The NATS link (its own thread; nats is imported only here): fetched messages go
    to the receiving actor, or back to JetStream while it is not running; other hives'
    operator requests to the admin verbs."""
    from hive.actors.fed_inbox import IncomingBatch
    from hive.federation.fleet import control_handler, publish_status
    from hive.federation.link import NatsLink

    assert ctx.config.federation is not None
    link = NatsLink(
        ctx.config.federation, lambda items: ctx.refs.tell("fed_inbox", IncomingBatch(tuple(items)))
    )
    link.serve_control(control_handler(ctx, api))
    link.start()
    ctx.io.spawn(publish_status, ctx)  # this hive's row of the fleet view, every second
    return link


def _stop_federation(ctx: HiveContext) -> None:
    if ctx.federation is not None:
        ctx.federation.stop()


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
    from hive.actors.base import Ping

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


def ready_status(cfg: HiveConfig, agents: int) -> str:
    """What `systemctl status` shows once the daemon serves."""
    admin = cfg.sockets_dir / "admin.sock"
    return f"serving {agents} agent{'s' if agents != 1 else ''}; admin socket {admin}"


async def _watchdog(ctx: Any, status: str) -> None:
    """Ping systemd's watchdog only while the trio loop and every actor of the tree answer
    (the Supervisor, the Store, the Bus, ..., each Agent), so a daemon with a hung loop or
    a hung actor is killed and restarted by systemd rather than kept alive by a timer.

    A round every quarter of WatchdogSec: ping every actor, WATCHDOG=1 if all answered
    within the round. A stuck actor is reported (log and status) within half of
    WatchdogSec, before systemd acts; one busy for less than half of it costs nothing."""
    half = watchdog_interval()
    if half is None:
        return
    period = half / 2
    silent_before: set[str] = set()
    while True:
        started = trio.current_time()
        silent = await _unanswered(ctx, period)
        if not silent:
            notify(f"WATCHDOG=1\nSTATUS={status}" if silent_before else "WATCHDOG=1")
            if silent_before:
                log.warning("watchdog: every actor answers again")
        elif silent != silent_before:
            names = ", ".join(sorted(silent))
            log.error("watchdog: %s did not answer within %g s; not pinging systemd", names, period)
            notify(f"STATUS=hung: {names} not answering")
        silent_before = silent
        await trio.sleep_until(started + period)


async def _unanswered(ctx: Any, within: float) -> set[str]:
    """Ping every actor in the directory; the names of those that did not answer in time."""
    from hive.actors.base import Ping

    waiting: set[str] = set()
    all_answered = trio.Event()

    def answered(name: str) -> None:  # on the trio thread, like this function
        waiting.discard(name)
        if not waiting:
            all_answered.set()

    for name in ctx.refs.names():
        # Answers come through call_soon, so none can arrive before this loop awaits.
        if ctx.refs.tell(name, Ping(partial(ctx.io.call_soon, answered, name))):
            waiting.add(name)
    if waiting:
        with trio.move_on_after(within):
            await all_answered.wait()
    return set(waiting)
