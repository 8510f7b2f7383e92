"""The Agent actor: one per agent. Its inbox, its turn loop, its crash watch, its kick.

Rules it keeps:
- A message stays pending until its receiver provably has it: a turn that had it in its
  prompt ended cleanly, or a client acknowledged it (``ack``) after a ``recv`` or a held
  ``ask_operator`` reply carried it. A message acknowledged inside a turn shares the
  turn's fate; one handed over but not acknowledged goes back to the inbox when its
  connection closes or its turn ends. A turn that crashes leaves its messages pending.
- A crashed turn is retried after a backoff; at most ``restart_intensity`` restarts in
  ``restart_period`` seconds, and the crash after that marks the agent failed: nothing
  restarts it until the operator acts. The manager is told of each crash.
- needs_login parks the agent (no restarts); rate limits back off without counting as a
  crash; a too-long context retries once compacted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from hive import hoptrace
from hive.actors.admission import (
    AdmissionRestarted,
    Admitted,
    Forget,
    Present,
    Queued,
    RetireSession,
    TurnOver,
    WantTurn,
)
from hive.actors.base import (
    DEPTH_PUBLISH_SECONDS,
    Alive,
    HiveContext,
    InjectFault,
    Registered,
    Reply,
    Republish,
    SupervisedActor,
    tell_quietly,
)
from hive.actors.bus import InboxDepth, Send
from hive.actors.hub import Publish
from hive.actors.store import Write
from hive.config import AgentConfig
from hive.notes import past_limit
from hive.process import AgentPaths
from hive.runtimes import get_runtime
from hive.runtimes.base import ExitClass, TurnEvent, TurnInput, TurnOutcome
from hive.spend import Usage, day_of, insert_usage, next_day_starts, over_budget
from hive.status import AgentStatus, LastTurn
from hive.store import AgentRow, Queries
from hive.wire import MANAGER, OPERATOR, SYSTEM, Envelope, WireError, packb

if TYPE_CHECKING:
    from hive.io.bridge import Timer

log = logging.getLogger(__name__)

MAX_COMPACT_RETRIES = 2
# The event each operator lifecycle op leaves (the dashboard's and `hivectl events`' history).
CONTROL_EVENTS = {
    "pause": "paused",
    "resume": "resumed",
    "cancel": "cancelled",
    "reset": "reset",
    "restart": "restarted",
    "stop": "stopped",
    "stop_hard": "stopped",
    "start": "started",
}


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrived:
    """Messages committed for this agent. ``commit`` is the number of the transaction
    that stored them (hive.actors.base.CommitClock; 0: unknown): a load that saw that
    transaction has them already. ``held`` ones ride in a held reply (an answered
    question): kept aside, awaiting that reply's acknowledgement. ``handed``: the
    committing thread already gave them to this parked recv (waiter id, holder) through
    the recv lane (hive.actors.recv_lane): kept aside, awaiting the reader's ack."""

    envs: tuple[Envelope, ...]
    commit: int = 0
    held: bool = False
    handed: tuple[int, int] | None = None


@dataclass(frozen=True)
class Ack:
    """A client has these messages (it read a reply that carried them)."""

    ids: tuple[int, ...]
    reply: Reply
    holder: int = 0  # the connection that acknowledges (see Release)


@dataclass(frozen=True)
class Release:
    """These messages were handed over, but the connection that carried them closed
    (or could not carry them) before they were acknowledged: back to the inbox."""

    ids: tuple[int, ...]
    # The connection that gives them back (0: any): it takes back only what it holds,
    # not what went back to the inbox meanwhile and was handed to another reader.
    holder: int = 0


@dataclass(frozen=True)
class Kick:
    """Start a turn now, even with an empty inbox, with an optional note for the agent."""

    note: str | None = None
    reply: Reply | None = None


@dataclass(frozen=True)
class Recv:
    """The agent's ``recv`` in a turn: hand over new messages, waiting up to ``wait_seconds``."""

    waiter_id: int
    wait_seconds: float
    reply: Reply
    holder: int = 0  # the connection that asks (see Release)


@dataclass(frozen=True)
class RecvTimeout:
    """A waiting ``recv``'s time is up: answer it with no messages."""

    waiter_id: int


@dataclass(frozen=True)
class SetStatus:
    """Set the agent's status line (dashboard, ``hivectl status``)."""

    text: str
    reply: Reply | None = None


@dataclass(frozen=True)
class TurnEventMsg:
    """One event of the running turn, from the trio thread."""

    turn_id: int
    event: TurnEvent


@dataclass(frozen=True)
class TurnEnded:
    """The turn's process is done: how it ended, from the trio thread."""

    turn_id: int
    outcome: TurnOutcome


@dataclass(frozen=True)
class RetryDue:
    """The crash back-off has passed (stale if ``generation`` is not the latest)."""

    generation: int


@dataclass(frozen=True)
class SessionIdle:
    """The idle timer of a persistent agent's session process (``_arm_idle_timer``)."""

    timer: object


@dataclass(frozen=True)
class NotesMeasured:
    """The size of the agent's notes after a clean turn (``NotesCompactor.measure``)."""

    size: int
    turn: TurnInput


@dataclass(frozen=True)
class NotesCompactionEnded:
    """The rewrite this actor started has ended (``NotesCompactor.compact``)."""

    compacted: bool


RESTART_NOTE = "restarted by the operator"  # the kick a restart carries


# Operator lifecycle: one message type per operation. Each replies ``{"agent", ...}`` once
# its change is committed; Stop and Restart reply once the running turn has ended.


@dataclass(frozen=True)
class Pause:
    """No turn starts until Resume; mail waits in the inbox."""

    reply: Reply | None = None


@dataclass(frozen=True)
class Resume:
    """Let turns start again after Pause."""

    reply: Reply | None = None


@dataclass(frozen=True)
class CancelTurn:
    """End the running turn now (its messages stay pending for the next one)."""

    reply: Reply | None = None


@dataclass(frozen=True)
class Reset:
    """Clear failed and needs_login and the crash history; drop a pending backoff."""

    reply: Reply | None = None


@dataclass(frozen=True)
class Restart:
    """Reset, start a stopped agent, end a running turn, and start a turn at once."""

    reply: Reply | None = None


@dataclass(frozen=True)
class Stop:
    """No more turns: the running one finishes (or, ``hard``, is cancelled)."""

    hard: bool = False
    reply: Reply | None = None


@dataclass(frozen=True)
class Start:
    """Undo Stop."""

    reply: Reply | None = None


@dataclass(frozen=True)
class Configure:
    """Control-plane settings: the model for the next turns, the needs_update flag.
    Replies ``{"agent", "model", "needs_update"}`` once committed."""

    model: str | None = None
    needs_update: bool | None = None
    reply: Reply | None = None


@dataclass(frozen=True)
class _PublishDirty:
    pass


@dataclass(frozen=True)
class _DepthDue:
    pass


@dataclass(frozen=True)
class _BudgetDay:
    """A new UTC day: an agent parked over budget may run again."""


@dataclass(frozen=True)
class _RetryWrites:
    """Try again to hand the Store the writes it could not take (it was restarting)."""


@dataclass(frozen=True)
class _NotDelivered:
    """A delivered mark did not commit: these messages are still pending in the store,
    so they go back to the inbox."""

    envs: tuple[Envelope, ...]


@dataclass(frozen=True)
class _Acked:
    """An operator change has committed: publish the row, then answer."""

    reply: Reply | None
    result: Any
    error: BaseException | None


def _noop(q: Queries) -> None:
    return None


# --- state ----------------------------------------------------------------------------


@dataclass
class Turn:
    """The turn the agent is playing now: its id, the messages it carries and what it did."""

    id: int
    started_at: float
    message_ids: tuple[int, ...]
    kick_note: str | None
    model: str
    events: int = 0
    received: list[Envelope] = field(default_factory=list)  # handed over by recv
    usage: Usage | None = None  # what the runtime reported it cost (hive.spend)


@dataclass
class AgentState:
    """What the actor rebuilds from the store when it starts, and the number of the last
    transaction that read saw (hive.actors.base.CommitClock)."""

    row: AgentRow
    pending: list[Envelope] = field(default_factory=list)
    last_turn: dict[str, Any] | None = None
    commit: int = 0


# Room a recv reply keeps for its frame's envelope around the messages.
RECV_FRAME_MARGIN = 4096
# How soon writes the Store could not take (it was being restarted) are offered again.
WRITE_RETRY_SECONDS = 0.05
# recvs one agent may have parked at once: each holds a reply and a timer, so an agent
# that pipelines thousands would hold the daemon's memory (one model needs one or two).
MAX_WAITING_RECVS = 32


class AgentActor(SupervisedActor):
    """One agent: owns its inbox, turns, status and crash watch; decides when a turn starts."""

    def __init__(
        self, ctx: HiveContext, config: AgentConfig, initial: AgentState | None = None
    ) -> None:
        super().__init__(ctx)
        self.child_id = ctx.agent_ref_name(config.name)
        self.cfg = config
        self.name = config.name
        self.paths = AgentPaths.for_agent(config.name, ctx.config.state_dir, ctx.config.sockets_dir)
        self._initial = initial
        self.pending: dict[int, Envelope] = {}
        # Handed to a client, not yet acknowledged: id -> (message, the turn it was
        # handed in, or None outside a turn and for held replies; the connection that
        # holds it, 0 for held replies).
        self.unacked: dict[int, tuple[Envelope, int | None, int]] = {}
        # The newest transaction whose messages this actor has (CommitClock).
        self.seen_commit = 0
        self.turn: Turn | None = None
        self.turn_state = "idle"
        self.kick_note: str | None = None
        self.hold = False  # after an operator cancel: wait for news before the next turn
        self.paused = False
        self.failed = False
        self.failed_reason = ""
        self.needs_login = False
        self.needs_update = False
        self.stopped = False
        self.over_budget = ""  # why it is parked for the rest of the day (hive.spend)
        self.budget_waived_day = ""  # the operator's reset let it run on that day
        self.deployed_sha = ""
        self.restarting = False  # a restart cancelled the turn: no hold when it ends
        self.turn_waiters: list[tuple[Reply | None, dict[str, Any]]] = []
        self.seen_id = 0  # the newest message that arrived (inbox_cap accounting)
        self.model = config.model
        self.status_text = ""
        self.status_set_at: float | None = None
        self.last_turn: dict[str, Any] | None = None
        self.crash_times: deque[float] = deque()
        self.rate_limit_streak = 0
        self.compact_streak = 0
        self.compact_next = False
        self.last_turn_ok = True  # a failed turn's successor starts a fresh session process
        self.idle_timer: Timer | None = None  # closes a persistent session left idle
        self.notes_compacting = False  # a rewrite of the notes this actor started is running
        self.last_input: TurnInput | None = None  # what the running turn was given
        self.retry_generation = 0
        self._init_admission()
        self.retry_at: float | None = None
        self.waiters: dict[int, Recv] = {}
        self.recv_timers: dict[int, Timer] = {}  # the waiters' RecvTimeouts, cancelled on answer
        self.lane_waiter: int | None = None  # the waiter offered in the recv lane
        self.dirty = False
        self.depth_stale = False  # the row's inbox depth is behind, its publish timed
        self.depth_armed = False  # told _DepthDue at the hive's next depth tick
        self.published_at = 0.0  # time.monotonic() of the last publish
        # Writes told while the Store was dead, before its successor was registered:
        # kept in order and offered again, never dropped (a dropped delivered mark left
        # a message pending in the database but gone from this inbox).
        self.unwritten: deque[Write] = deque()

    def _init_admission(self) -> None:
        """Turn admission (hive.actors.admission), when the hive has limits: a turn waits
        (``queued``, why in ``queue_reason``) until the Admission actor admits it."""
        self.queued = False
        self.queued_urgent = False
        self.admitted = False
        self.queue_reason = ""
        self.queued_at = 0.0

    # --- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        state = self._initial or self._load_state()
        self._initial = None
        row = state.row
        self.paused, self.failed, self.failed_reason = row.paused, row.failed, row.failed_reason
        self.needs_login, self.needs_update = row.needs_login, row.needs_update
        self.stopped, self.deployed_sha = row.stopped, row.deployed_sha
        self.model = row.model or self.cfg.model
        self.status_text, self.status_set_at = row.status_text, row.status_set_at
        self.kick_note = row.kick_note  # a stored kick outlives a daemon crash
        self.budget_waived_day = row.budget_waived_day  # so does the operator's budget reset
        self.last_turn = state.last_turn
        # A restarted actor knows how its last turn ended (a session process may outlive it).
        ended = (state.last_turn or {}).get("exit_class")
        self.last_turn_ok = ended in (None, str(ExitClass.OK))
        self._check_budget(time.time(), announce=False)  # already told, if it was parked
        self._take_loaded(state.pending, state.commit)
        self._tell_admission(Forget(self.name))  # a predecessor's place or slot is void
        self._publish()
        # A restarted actor's session process may have outlived it: it idles out as any.
        self._arm_idle_timer()
        # An agent that comes up with mail waiting is kicked by its mail.
        self._maybe_start_turn()

    def _load_state(self) -> AgentState:
        from hive.actors.store import Read

        store = self.ctx.refs.get("store")
        if store is None:
            raise RuntimeError("store is not running")
        name = self.name

        commits = self.ctx.commits

        def load(q: Queries) -> AgentState:
            rows = [r for r in q.agents() if r.name == name]
            if not rows:
                raise RuntimeError(f"agent {name} is not in the store")
            return AgentState(
                rows[0], q.pending_messages(name), q.last_turns().get(name), commits.committed
            )

        return cast(AgentState, store.ask(Read(load)))

    def _catch_up(self) -> None:
        """Read the mail committed while this actor started. Until the Supervisor put
        its ref in the directory, the Bus had no one to tell of it; from then on every
        commit is told, so one read now closes the gap. Runs once, at start-up."""
        from hive.actors.store import Read

        store = self.ctx.refs.get("store")
        if store is None:
            return  # a restarted store is followed by a restarted tree: nothing to close
        name, commits = self.name, self.ctx.commits

        def load(q: Queries) -> tuple[list[Envelope], int]:
            return q.pending_messages(name), commits.committed

        envs, commit = cast(tuple[list[Envelope], int], store.ask(Read(load)))
        self._take_loaded(envs, commit)
        self._maybe_start_turn()
        self._mark_dirty()

    def _take_loaded(self, envs: list[Envelope], commit: int) -> None:
        """Messages a read found pending, as of transaction ``commit``."""
        for env in envs:
            if not self._has(env.id):
                self.pending[env.id] = env
                self.seen_id = max(self.seen_id, env.id)
        self.pending = dict(sorted(self.pending.items()))
        self.seen_commit = max(self.seen_commit, commit)

    def _has(self, msg_id: int) -> bool:
        """Is this message already in this actor's hands (waiting, handed over, or part of
        the running turn)? Then a second notice of it must not make a second copy."""
        if msg_id in self.pending or msg_id in self.unacked:
            return True
        turn = self.turn
        return turn is not None and (
            msg_id in turn.message_ids or any(e.id == msg_id for e in turn.received)
        )

    def unfinished(self) -> list[object]:
        # Parked recvs: the successor parks them again (their readers still wait), so
        # mail that arrives after this actor died still reaches them.
        in_lane, lane = self.lane_waiter, self.ctx.recv_lane
        if in_lane is not None and not lane.withdraw(self.name, self.waiters[in_lane]):
            self.waiters.pop(in_lane)  # answered from the lane: its reader has its messages
        parked, self.waiters = list(self.waiters.values()), {}
        return list(parked)

    def on_stop(self) -> None:
        self._tell_admission(Forget(self.name))
        self._answer_waiters_empty()
        self._disarm_idle_timer()
        if self.turn is not None:
            self.ctx.services.turns.cancel(self.name)
            self._record_stopped_turn(self.turn.id)

    def _record_stopped_turn(self, turn_id: int) -> None:
        """Stopped mid-turn (the hive shuts down, the agent is removed or replaced): the
        turn is on record as cancelled, not left running forever. Its messages stay
        pending. The Store stops after the agents and takes this write before it does."""

        def record(q: Queries) -> None:
            q.end_turn(turn_id, str(ExitClass.CANCELLED), None, "stopped with its agent")

        self.ctx.refs.tell("store", Write(record))

    # --- dispatch -----------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        match message:
            case Alive():
                return True
            case InjectFault():
                self.injected(message)
                return None
        handled = (
            self._on_mail(message)
            or self._on_turn(message)
            or self._on_operator(message)
            or self._on_own(message)
        )
        if not handled:
            log.warning("agent %s: unexpected message %r", self.name, message)
        return None

    def _on_mail(self, message: Any) -> bool:
        match message:
            case Arrived(envs=envs, handed=(waiter_id, holder)):
                self._arrived_handed(envs, waiter_id, holder)
            case Arrived(envs=envs, commit=commit, held=held):
                self._arrived(envs, commit, held)
            case Registered():
                self._catch_up()
            case Recv():
                self._recv(message)
            case Ack(ids=ids, reply=reply, holder=holder):
                self._ack(ids, reply, holder)
            case Release(ids=ids, holder=holder):
                self._release(ids, holder)
            case RecvTimeout(waiter_id=wid):
                self._recv_timed_out(wid)
            case SetStatus(text=text, reply=reply):
                self._set_status(text, reply)
            case _:
                return False
        return True

    def _on_turn(self, message: Any) -> bool:
        match message:
            case TurnEventMsg(turn_id=tid, event=event):
                if self.turn is not None and self.turn.id == tid:
                    self._turn_event(event)
            case TurnEnded(turn_id=tid, outcome=outcome):
                if self.turn is not None and self.turn.id == tid:
                    carried_kick = self.turn.kick_note is not None
                    self._turn_ended(outcome)
                    if carried_kick:
                        self._store_kick()  # served (cleared) or kept for the next turn
            case Admitted() | Queued() | RetireSession() | AdmissionRestarted():
                self._on_admission(message)
            case SessionIdle(timer=timer):
                if timer is self.idle_timer and self.turn is None:
                    self.idle_timer = None
                    idle = self.ctx.config.session_idle_seconds
                    self.ctx.services.turns.close_session(self.name, f"idle for {idle:g} s")
            case NotesMeasured(size=size, turn=turn):
                self._notes_measured(size, turn)
            case NotesCompactionEnded():
                self.notes_compacting = False
            case RetryDue(generation=gen):
                if gen == self.retry_generation and self.retry_at is not None:
                    self.retry_at = None
                    self._mark_dirty()
                    self._maybe_start_turn()
            case _:
                return False
        return True

    def _on_operator(self, message: Any) -> bool:
        match message:
            case Kick(note=note, reply=reply):
                self._kick(note, reply)
            case Pause(reply=reply):
                self._set_paused(True, reply)
            case Resume(reply=reply):
                self._set_paused(False, reply)
            case CancelTurn(reply=reply):
                self._cancel_turn(reply)
            case Reset(reply=reply):
                self._reset("reset", reply)
            case Restart(reply=reply):
                self._restart(reply)
            case Stop(hard=hard, reply=reply):
                self._stop_agent(hard, reply)
            case Start(reply=reply):
                self._start_agent(reply)
            case Configure():
                self._configure(message)
            case _:
                return False
        return True

    def _on_own(self, message: Any) -> bool:
        match message:
            case Republish():
                self._publish()
            case _PublishDirty():
                if self.dirty:
                    self._publish()
            case _DepthDue():
                self.depth_armed = False
                if self.depth_stale:
                    self._mark_dirty()
            case _RetryWrites():
                self._offer_unwritten()
            case _BudgetDay():
                self._check_budget(time.time(), announce=False)
                self._maybe_start_turn()
            case _NotDelivered(envs=envs):
                self._return_to_inbox([e for e in envs if not self._has(e.id)])
            case _Acked(reply=reply, result=result, error=error):
                if error is None:
                    self._publish()  # whoever is answered sees the change in the row
                if reply is not None:
                    reply(WireError("store_failed", f"not saved: {error}") if error else result)
            case _:
                return False
        return True

    def _recv_timed_out(self, waiter_id: int) -> None:
        parked = self._take_waiter(waiter_id)
        if parked is not None:
            parked.reply({"messages": []})
            if self.turn is not None and self.turn_state == "waiting_recv":
                self._set_turn_state("thinking")

    # --- inbox --------------------------------------------------------------------------

    def _arrived(self, envs: tuple[Envelope, ...], commit: int, held: bool) -> None:
        if commit and commit <= self.seen_commit:
            return  # a read this actor started from saw that transaction already
        fresh = [e for e in envs if not self._has(e.id)]
        if not fresh:
            return
        for env in fresh:
            self.seen_id = max(self.seen_id, env.id)
            if held:
                self.unacked[env.id] = (env, None, 0)
            else:
                self.pending[env.id] = env
        self._mark_depth()
        if held:
            return  # its reply is on the way; the inbox copy waits for its fate
        if self.queued and not self.queued_urgent and _urgent(fresh):
            self._ask_admission()  # operator or manager mail: to the front of the queue
        self._news()

    def _arrived_handed(self, envs: tuple[Envelope, ...], waiter_id: int, holder: int) -> None:
        """The committing thread answered a parked recv with these messages (the recv
        lane): they wait aside for the reader's ack, as if this actor had handed them."""
        if self.lane_waiter == waiter_id:
            self.lane_waiter = None
        timer = self.recv_timers.pop(waiter_id, None)
        if timer is not None:
            timer.cancel()
        self.waiters.pop(waiter_id, None)
        turn_id = self.turn.id if self.turn is not None else None
        for env in envs:
            self.pending.pop(env.id, None)  # a successor's load may have found it pending
            self.unacked[env.id] = (env, turn_id, holder)
            self.seen_id = max(self.seen_id, env.id)
        self.hold = False
        self._mark_depth()
        if self.turn is not None and self.turn_state == "waiting_recv":
            self._set_turn_state("thinking")
        self._offer_to_lane()

    def _offer_to_lane(self) -> None:
        """Keep the oldest parked recv in the recv lane (hive.actors.recv_lane)."""
        if self.lane_waiter is None and self.waiters:
            waiter_id, recv = next(iter(self.waiters.items()))
            self.lane_waiter = waiter_id
            self.ctx.recv_lane.offer(self.name, recv)

    def _news(self) -> None:
        """New messages are pending: a waiting recv gets them, else they may start a turn."""
        self.hold = False
        while self.waiters:
            parked = self._take_waiter(next(iter(self.waiters)))
            if parked is None:
                continue  # the recv lane answered that one: the next waiter gets these
            self._hand_over(parked, self._news_for_recv())
            if self.turn is not None and self.turn_state == "waiting_recv":
                self._set_turn_state("thinking")
            return
        self._maybe_start_turn()

    def _news_for_recv(self) -> list[Envelope]:
        in_turn = set(self.turn.message_ids) if self.turn else set()
        return [e for i, e in self.pending.items() if i not in in_turn]

    def _recv(self, m: Recv) -> None:
        news = self._news_for_recv()
        if news:
            self._hand_over(m, news)
        elif m.wait_seconds <= 0:
            m.reply({"messages": []})
        elif len(self.waiters) >= MAX_WAITING_RECVS:
            m.reply(
                WireError(
                    "too_many_recvs",
                    f"'{self.name}' already has {len(self.waiters)} recvs waiting (the limit); "
                    "wait for one to return before asking again",
                )
            )
        else:
            self.waiters[m.waiter_id] = m
            self._offer_to_lane()
            if self.turn is not None:
                self._set_turn_state("waiting_recv")
            me = self.actor_ref
            self.recv_timers[m.waiter_id] = self.ctx.io.call_later(
                m.wait_seconds, lambda: tell_quietly(me, RecvTimeout(m.waiter_id))
            )

    def _take_waiter(self, waiter_id: int) -> Recv | None:
        """A parked recv, no longer parked: its timer is called off. None if it is gone,
        or if the recv lane answered it first (its Arrived is on the way)."""
        timer = self.recv_timers.pop(waiter_id, None)
        if timer is not None:
            timer.cancel()
        parked = self.waiters.pop(waiter_id, None)
        if parked is not None and waiter_id == self.lane_waiter:
            self.lane_waiter = None
            if not self.ctx.recv_lane.withdraw(self.name, parked):
                return None
        self._offer_to_lane()
        return parked

    def _answer_waiters_empty(self) -> None:
        for waiter_id in list(self.waiters):
            parked = self._take_waiter(waiter_id)
            if parked is not None:
                parked.reply({"messages": []})

    def _hand_over(self, recv: Recv, envs: list[Envelope]) -> None:
        """Give a recv as many messages as fit in one reply frame, oldest first.

        They leave the inbox for ``unacked``: nothing is delivered until the client
        acknowledges the reply (``_ack``). Unacknowledged, they come back to the inbox
        when the connection closes (``_release``) or the turn ends, so a reply that never
        reached a reader (a hang-up, a daemon crash, a frame too large) loses nothing."""
        budget = self.ctx.config.max_frame_bytes - RECV_FRAME_MARGIN
        wires: list[dict[str, Any]] = []
        for env in envs:
            wire = env.to_wire()
            size = len(packb(wire))
            if wires and size > budget:
                break
            budget -= size
            wires.append(wire)
        taken = envs[: len(wires)]
        turn_id = self.turn.id if self.turn is not None else None
        for env in taken:
            self.pending.pop(env.id, None)
            self.unacked[env.id] = (env, turn_id, recv.holder)
        ids = [e.id for e in taken]
        if hoptrace.ENABLED:
            hoptrace.stamp("handed", ids)
        recv.reply({"messages": wires, "ack_ids": ids, "more": len(taken) < len(envs)})
        self._mark_depth()

    def _ack(self, ids: tuple[int, ...], reply: Reply, holder: int = 0) -> None:
        """The client has these messages. Inside a turn they join it (delivered when it
        ends cleanly); outside one, delivered now, answered once that is stored."""
        # Only what this connection holds: a message given back meanwhile (its turn
        # ended, its connection closed, its actor restarted) is owed again, and a late
        # ack must not mark it delivered behind the turn whose fate it shares.
        taken = [self.unacked.pop(i)[0] for i in dict.fromkeys(ids) if self._held_by(i, holder)]
        if taken:
            self._mark_depth()
        if self.turn is not None or not taken:
            if self.turn is not None:
                self.turn.received.extend(taken)
            reply({"acked": len(taken)})
            return
        delivered = [e.id for e in taken]
        me = self.actor_ref

        def mark(q: Queries) -> None:
            q.mark_delivered(delivered, "recv", None)

        def done(_: Any, error: BaseException | None) -> None:
            if error is not None:
                # Still pending in the store: back to the inbox, to be given again.
                tell_quietly(me, _NotDelivered(tuple(taken)))
                reply(WireError("store_failed", f"acknowledgement not stored: {error}"))
            else:
                reply({"acked": len(delivered)})

        self._write(mark, done)

    def _release(self, ids: tuple[int, ...], holder: int = 0) -> None:
        back = [self.unacked.pop(i)[0] for i in ids if self._held_by(i, holder)]
        if back:
            self._return_to_inbox(back)

    def _held_by(self, msg_id: int, holder: int) -> bool:
        """Is this message handed over, to ``holder``? A connection's list of what it
        holds goes stale when a turn's end takes its messages back; it must not take
        them back from the reader they were handed to since. 0 on either side: any."""
        handed = self.unacked.get(msg_id)
        return handed is not None and (0 in (holder, handed[2]) or handed[2] == holder)

    def _return_to_inbox(self, envs: list[Envelope]) -> None:
        self.pending.update((e.id, e) for e in envs)
        self.pending = dict(sorted(self.pending.items()))
        self._mark_dirty()
        self._news()

    # --- turns --------------------------------------------------------------------------

    def _can_start(self) -> bool:
        return not (
            self.turn is not None
            or self.paused
            or self.failed
            or self.needs_login
            or self.retry_at is not None
            or self.hold
            or self.stopped
            or bool(self.over_budget)
            or self.queued
        )

    def _maybe_start_turn(self) -> None:
        self._check_budget(time.time(), announce=True)  # the hive's budget: others spend too
        if not self._can_start():
            return
        if not self.pending and self.kick_note is None:
            return
        if self._admission_on() and not self.admitted:
            self._ask_admission()
            return
        self.admitted = False
        batch = list(self.pending.values())[: self.ctx.config.max_turn_messages]
        kick_note, self.kick_note = self.kick_note, None
        turn_id = self.ctx.turn_ids.next()
        model = self.model
        ids = tuple(e.id for e in batch)
        self.turn = Turn(turn_id, time.time(), ids, kick_note, model)
        name = self.name

        def record(q: Queries) -> None:
            q.start_turn(turn_id, name, model, ids, kick_note)

        self._write(record)
        turn = TurnInput(
            hive=self.ctx.config,
            agent=self.cfg,
            paths=self.paths,
            turn_id=turn_id,
            model=model,
            messages=tuple(batch),
            kick_note=kick_note,
            allowed_tools=self.cfg.allowed_tools,
            compact=self.compact_next,
        )
        fresh_process = self._why_fresh_process()
        self.last_input = turn
        self._disarm_idle_timer()
        self.compact_next = False
        self.last_turn_ok = True  # said once, to this turn
        me = self.actor_ref
        self.ctx.services.turns.start(
            turn,
            on_event=lambda ev: tell_quietly(me, TurnEventMsg(turn_id, ev)),
            on_end=lambda outcome: tell_quietly(me, TurnEnded(turn_id, outcome)),
            fresh_process=fresh_process,
            close_session=self._why_close_session(),
        )
        self._set_turn_state("starting")
        self._publish_turn("turn_started", self.turn)

    def _arm_idle_timer(self) -> None:
        """A persistent agent's session process is closed once it has been idle for
        ``session_idle_seconds``: a paused or stopped agent does not hold its memory for
        ever. (Armed when a turn ends, and when the actor starts; a turn disarms it.)"""
        self._disarm_idle_timer()
        if not self._plays_sessions():
            return
        me = self.actor_ref
        timer: list[Timer] = []

        def due() -> None:
            tell_quietly(me, SessionIdle(timer[0]))

        timer.append(self.ctx.io.call_later(self.ctx.config.session_idle_seconds, due))
        self.idle_timer = timer[0]

    def _plays_sessions(self) -> bool:
        """Persistent (the default) and on a runtime that keeps session processes."""
        from hive.io.sessions import SessionRuntime

        return self.cfg.persistent and isinstance(get_runtime(self.cfg.runtime), SessionRuntime)

    def _disarm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _why_fresh_process(self) -> str:
        """Why a persistent agent's next turn must not reuse its session process ("": it
        may). New credentials after a login, a hive-mcp that failed to start, a CLI in a
        bad state, a context being reset: the session's runner carries this out."""
        if not self.last_turn_ok:
            return "the last turn did not end ok"
        if self.compact_next:
            return "the context is being reset (compact retry)"
        return ""

    def _why_close_session(self) -> str:
        """Why a session process this agent may have left must be closed before its turn
        ("": none to close). An agent that is not persistent (any more: its config changed)
        plays in a process of its own, which must not run beside a session resuming the
        same conversation; the runner closes one if there is one."""
        return "" if self.cfg.persistent else "the agent left persistent mode"

    # --- turn admission: decided by hive.actors.admission --------------------------------

    def _admission_on(self) -> bool:
        cfg = self.ctx.config
        return bool(cfg.max_concurrent_turns or cfg.memory_budget_mb)

    def _tell_admission(self, message: object) -> None:
        if self._admission_on():
            self.ctx.refs.tell("admission", message)

    def _ask_admission(self) -> None:
        """Wait in the hive's queue for this turn (a restarted Admission actor asks again)."""
        urgent = _urgent(self.pending.values())
        if not self.queued:
            self.queue_reason = "waiting for admission"
            self.queued_at = time.time()
        self.queued, self.queued_urgent = True, urgent
        self._tell_admission(WantTurn(self.name, urgent))
        self._set_turn_state("queued")
        self._mark_dirty()

    def _on_admission(self, message: object) -> None:
        match message:
            case Admitted():
                # How long the turn waited, and why last: `hivectl events`, the benches.
                waited = round(time.time() - self.queued_at, 4)
                self._event("admitted", {"waited": waited, "reason": self.queue_reason})
                self.queued, self.admitted, self.queue_reason = False, True, ""
                self._set_turn_state("idle")
                self._maybe_start_turn()
                if self.turn is None:  # paused, stopped, or nothing left to do meanwhile
                    self.admitted = False
                    self._tell_admission(TurnOver(self.name))
            case Queued(reason=reason):
                if self.queued and reason != self.queue_reason:
                    self.queue_reason = reason
                    self._mark_dirty()
            case RetireSession(why=why):
                if self.turn is None:  # a queued turn resumes in a new process
                    self._disarm_idle_timer()
                    self.ctx.services.turns.close_session(self.name, why)
            case AdmissionRestarted():
                running = self.turn is not None
                urgent = self.queued_urgent
                self._tell_admission(Present(self.name, self.queued, urgent, running))

    # --- notes compaction: decided here, carried out by hive.notes.NotesCompactor ---------

    def _notes_after_clean_turn(self, turn: TurnInput | None) -> None:
        """After a clean turn, have the notes measured (answered as NotesMeasured), when
        this agent's runtime can rewrite them and no rewrite it started is running."""
        if turn is None or self.ctx.config.notes_compact_bytes <= 0:
            return
        if get_runtime(self.cfg.runtime).oneshot() is None:
            return
        if self.notes_compacting:
            self._event("notes_compaction_skipped", {"reason": "a rewrite is still running"})
            return
        me = self.actor_ref
        self.ctx.services.notes.measure(
            self.paths, lambda size: tell_quietly(me, NotesMeasured(size, turn))
        )

    def _notes_measured(self, size: int, turn: TurnInput) -> None:
        """Start a rewrite when the notes are past ``notes_compact_bytes``: one at a time."""
        limit = self.ctx.config.notes_compact_bytes
        if self.notes_compacting or not past_limit(size, limit):
            return
        self.notes_compacting = True
        me = self.actor_ref
        self.ctx.services.notes.compact(
            turn, limit, lambda compacted: tell_quietly(me, NotesCompactionEnded(compacted))
        )

    def _turn_event(self, event: TurnEvent) -> None:
        assert self.turn is not None
        seq = self.turn.events
        self.turn.events += 1
        turn_id = self.turn.id

        def record(q: Queries) -> None:
            q.add_turn_events(turn_id, seq, [(event.kind, event.data)])

        self._write(record)
        if event.kind == "usage":
            self.turn.usage = (self.turn.usage or Usage()) + Usage.from_event(event.data)
        if event.kind == "tool_call":
            tool = str(event.data.get("name", ""))
            if tool.endswith("ask_operator"):
                self._set_turn_state("waiting_operator")
            elif not tool.endswith("recv"):
                self._set_turn_state("tool")
        elif event.kind == "tool_result" or (
            event.kind in ("init", "text")
            and self.turn_state not in ("waiting_recv", "waiting_operator")
        ):
            self._set_turn_state("thinking")
        self.ctx.refs.tell(
            "hub",
            Publish(
                "turn_event",
                f"{turn_id}:{seq}",
                {"agent": self.name, "turn_id": turn_id, "seq": seq, "kind": event.kind,
                 "data": event.data},
            ),
        )  # fmt: skip

    def _turn_ended(self, outcome: TurnOutcome) -> None:
        """A turn ended: settle its mail, record it, then what its exit class asks for
        (one handler per class, ``_END_HANDLERS``), then answer who waited for it."""
        turn = self.turn
        assert turn is not None
        self.turn = None
        now = time.time()
        self._answer_waiters_empty()
        cls = outcome.exit_class
        self.last_turn_ok = cls == ExitClass.OK
        delivered, received = self._settle_mail(turn, cls == ExitClass.OK)
        self._record_turn_end(turn, outcome, now, delivered, received)
        self._account(turn, now)
        if cls != ExitClass.OK and turn.kick_note is not None and self.kick_note is None:
            self.kick_note = turn.kick_note  # the kick was not served; keep it
        _END_HANDLERS[cls](self, outcome, now)
        if cls == ExitClass.OK:
            self._notes_after_clean_turn(self.last_input)
        self._arm_idle_timer()
        self.restarting = False
        for waiter, result in self.turn_waiters:
            # Queued behind the lifecycle write, so it answers once that has committed.
            self._write(lambda q: None, self._acked(waiter, {**result, "turn_ended": turn.id}))
        self.turn_waiters.clear()
        self._tell_admission(TurnOver(self.name))
        self._set_turn_state("idle")
        self._maybe_start_turn()

    def _settle_mail(self, turn: Turn, clean: bool) -> tuple[list[Envelope], list[Envelope]]:
        """A clean turn delivered what it was given and what its recvs took (returned, to
        be marked so); any other gives them again. What a recv handed over but its reader
        never acknowledged goes back to the inbox either way."""
        in_prompt = [i for i in turn.message_ids if i in self.pending] if clean else []
        delivered = [self.pending.pop(i) for i in in_prompt]
        received = list(turn.received) if clean else []
        if not clean and turn.received:
            # Taken by a recv of a turn that did not end cleanly: give them again.
            self.pending.update((e.id, e) for e in turn.received)
            self.pending = dict(sorted(self.pending.items()))
        # Handed to this turn's recv but never acknowledged: its reader never had them.
        unread = [i for i, (_, tid, _) in self.unacked.items() if tid == turn.id]
        for i in unread:
            self.pending[i] = self.unacked.pop(i)[0]
        if unread:
            self.pending = dict(sorted(self.pending.items()))
        return delivered, received

    def _record_turn_end(
        self,
        turn: Turn,
        outcome: TurnOutcome,
        now: float,
        delivered: list[Envelope],
        received: list[Envelope],
    ) -> None:
        cls = outcome.exit_class
        turn_id = turn.id
        marked = delivered + received
        delivered_ids, received_ids = [e.id for e in delivered], [e.id for e in received]

        def record(q: Queries) -> None:  # one write: the delivery and the turn's end
            if delivered_ids:
                q.mark_delivered(delivered_ids, "turn", turn_id)
            if received_ids:
                q.mark_delivered(received_ids, "recv", turn_id)
            q.end_turn(turn_id, str(cls), outcome.exit_code, outcome.detail)

        me = self.actor_ref

        def recorded(_: Any, error: BaseException | None) -> None:
            if error is not None and marked:
                tell_quietly(me, _NotDelivered(tuple(marked)))  # still pending in the store

        self._write(record, recorded)
        self.last_turn = {
            "id": turn.id,
            "started_at": turn.started_at,
            "ended_at": now,
            "duration": now - turn.started_at,
            "exit_class": str(cls),
            "detail": outcome.detail,
        }
        self._publish_turn("turn_ended", turn)
        log.log(
            logging.INFO if cls == ExitClass.OK else logging.WARNING,
            "turn %s of %s ended: %s %s",
            turn.id,
            self.name,
            cls,
            outcome.detail,
            extra={"agent": self.name, "turn": turn.id},  # in the agent's log (hive.agentlog)
        )

    # --- cost and budgets (hive.spend) -----------------------------------------------------

    def _account(self, turn: Turn, now: float) -> None:
        """Record what the turn cost, then park the agent if that spent today's budget."""
        usage = turn.usage
        if usage is not None:
            name, model = self.name, turn.model
            self._write(lambda q: insert_usage(q, turn.id, name, model, now, usage))
            self.ctx.spend.add(name, usage, now)
        self._check_budget(now, announce=True)

    def _check_budget(self, now: float, announce: bool) -> None:
        """Parked over budget (state over_budget: not a crash, nothing retried) until the
        next UTC day or the operator's reset; the operator is told once, when it parks."""
        waived = self.budget_waived_day == day_of(now)
        reason = "" if waived else over_budget(self.ctx.config, self.cfg, self.ctx.spend, now)
        if reason == self.over_budget:
            return
        parked, self.over_budget = not self.over_budget, reason
        self._mark_dirty()
        if not (reason and parked):
            return
        me = self.actor_ref
        self.ctx.io.call_later(
            next_day_starts(now) - now + 1, lambda: tell_quietly(me, _BudgetDay())
        )
        if announce:
            self._event("over_budget", {"detail": reason})
            self._notify(
                OPERATOR,
                f"agent '{self.name}' is over budget: {reason}. It is parked with its messages "
                f"kept until the next UTC day; `hivectl reset {self.name}` lets it run on today.",
            )

    # --- one handler per exit class -------------------------------------------------------

    def _ended_ok(self, outcome: TurnOutcome, now: float) -> None:
        self.rate_limit_streak = 0
        self.compact_streak = 0

    def _ended_crash(self, outcome: TurnOutcome, now: float) -> None:
        self._crashed(outcome, now)

    def _ended_needs_login(self, outcome: TurnOutcome, now: float) -> None:
        self.needs_login = True
        self._write(lambda q: q.set_agent_fields(self.name, needs_login=1))
        self._event("needs_login", {"detail": outcome.detail})
        self._notify(
            OPERATOR,
            f"agent '{self.name}' needs login: {outcome.detail or 'authentication failed'}. "
            f"It is parked with its messages kept; run `hivectl login {self.name}`.",
        )

    def _ended_rate_limited(self, outcome: TurnOutcome, now: float) -> None:
        self.rate_limit_streak += 1
        delay = min(
            self.ctx.config.rate_limit_backoff * 2 ** (self.rate_limit_streak - 1),
            max(self.ctx.config.backoff_max, self.ctx.config.rate_limit_backoff) * 10,
        )
        self._schedule_retry(delay)
        self._event(
            "rate_limited",
            {"detail": outcome.detail, "retry_in": delay, "streak": self.rate_limit_streak},
        )

    def _ended_compact_retry(self, outcome: TurnOutcome, now: float) -> None:
        self.compact_streak += 1
        self._event("compact_retry", {"detail": outcome.detail, "attempt": self.compact_streak})
        if self.compact_streak > MAX_COMPACT_RETRIES:
            self._crashed(
                TurnOutcome(ExitClass.CRASH, "context still too long after compacting"), now
            )
        else:
            self.compact_next = True

    def _ended_cancelled(self, outcome: TurnOutcome, now: float) -> None:
        # Cancelled by the operator: hold (no new turn until new mail or a kick), unless
        # the cancel was a restart's.
        self.hold = not self.restarting

    def _crashed(self, outcome: TurnOutcome, now: float) -> None:
        cfg = self.ctx.config
        self.crash_times.append(now)
        while self.crash_times and self.crash_times[0] < now - cfg.restart_period:
            self.crash_times.popleft()
        crashes = len(self.crash_times)
        what = outcome.detail or f"exit code {outcome.exit_code}"
        if crashes > cfg.restart_intensity:
            self.failed = True
            self.failed_reason = f"{crashes} crashes in {cfg.restart_period:g} s (last: {what})"
            reason = self.failed_reason
            self._write(lambda q: q.set_agent_fields(self.name, failed=1, failed_reason=reason))
            self._event("failed", {"reason": reason})
            log.warning("%s failed: %s", self.name, reason, extra={"agent": self.name})
            self._notify(
                MANAGER,
                f"agent '{self.name}' FAILED: {reason}. It will not be restarted until the "
                "operator acts (hivectl restart).",
                kind="crash",
            )
            return
        delay = min(cfg.backoff_initial * 2 ** (crashes - 1), cfg.backoff_max)
        self._event("crash", {"detail": what, "crashes": crashes, "retry_in": delay})
        self._notify(
            MANAGER,
            f"agent '{self.name}' crashed ({what}); restart {crashes}/{cfg.restart_intensity} "
            f"within {cfg.restart_period:g} s, retrying in {delay:g} s",
            kind="crash",
        )
        self._schedule_retry(delay)

    def _schedule_retry(self, delay: float) -> None:
        self.retry_generation += 1
        gen = self.retry_generation
        self.retry_at = time.time() + delay
        me = self.actor_ref
        self.ctx.io.call_later(delay, lambda: tell_quietly(me, RetryDue(gen)))
        self._mark_dirty()

    # --- kicks ------------------------------------------------------------------------------

    def _kick(self, note: str | None, reply: Reply | None) -> None:
        """A kick is answered once it is stored: a daemon crash after the answer still
        serves it (the restarted actor reads it back), until a turn that carried it ends
        cleanly."""
        self.kick_note = note or ""
        self.hold = False
        self._maybe_start_turn()
        result = {"queued": self.turn is None or self.turn.kick_note is None}
        self._store_kick(self._acked(reply, result))
        self._event("kicked", {"note": (note or "")[:200]})

    def _store_kick(self, done: Any = None) -> None:
        # The outstanding kick: queued for the next turn, or carried by the running one.
        outstanding = self.kick_note
        if outstanding is None and self.turn is not None:
            outstanding = self.turn.kick_note
        name = self.name
        self._write(lambda q: q.set_agent_fields(name, kick_note=outstanding), done)

    # --- operator control -----------------------------------------------------------------

    def _set_paused(self, paused: bool, reply: Reply | None) -> None:
        self.paused = paused
        self._controlled("pause" if paused else "resume", {"paused": int(paused)}, reply)

    def _cancel_turn(self, reply: Reply | None) -> None:
        result = {"cancelled": self.turn is not None}
        if self.turn is not None:
            self.ctx.services.turns.cancel(self.name)
        self._controlled("cancel", {}, reply, result)

    def _reset(self, op: str, reply: Reply | None) -> None:
        """The operator's "start again": clears failed and needs_login and the crash
        history, drops a pending backoff."""
        self.failed = self.needs_login = False
        self.failed_reason = ""
        fields: dict[str, Any] = {"failed": 0, "failed_reason": "", "needs_login": 0}
        if self.over_budget:  # the operator lets it spend on today
            self.over_budget, self.budget_waived_day = "", day_of(time.time())
            fields["budget_waived_day"] = self.budget_waived_day
        self.crash_times.clear()
        self.retry_at = None
        self.retry_generation += 1
        self.hold = False
        if op == "reset":
            self._controlled(op, fields, reply)
            return
        # restart also starts a stopped agent, ends a running turn now (its messages stay
        # pending for the next one), and starts a turn at once, not only when the next
        # message arrives: restart means this for hivectl and the dashboard alike.
        self.stopped = False
        fields["stopped"] = 0
        if self.kick_note is None:
            self.kick_note = RESTART_NOTE
        fields["kick_note"] = self.kick_note
        wait = self.turn is not None
        if wait:
            self.restarting = True
            self.ctx.services.turns.cancel(self.name)
        self._controlled(op, fields, reply, {"stopped": False}, wait_for_turn=wait)

    def _restart(self, reply: Reply | None) -> None:
        self._reset("restart", reply)

    def _stop_agent(self, hard: bool, reply: Reply | None) -> None:
        # stop is graceful: the running turn finishes, no other starts.
        self.stopped = True
        wait = self.turn is not None
        if wait and hard:
            self.ctx.services.turns.cancel(self.name)
        op = "stop_hard" if hard else "stop"
        self._controlled(op, {"stopped": 1}, reply, {"stopped": True}, wait_for_turn=wait)

    def _start_agent(self, reply: Reply | None) -> None:
        self.stopped = False
        self.hold = False
        self._controlled("start", {"stopped": 0}, reply, {"stopped": False})

    def _controlled(
        self,
        op: str,
        fields: dict[str, Any],
        reply: Reply | None,
        extra: dict[str, Any] | None = None,
        wait_for_turn: bool = False,
    ) -> None:
        """Commit a lifecycle change; reply once it is committed (and, ``wait_for_turn``,
        once the running turn has ended)."""
        result: dict[str, Any] = {"agent": self.name, **(extra or {})}
        self._event(CONTROL_EVENTS[op], {"op": op})
        name = self.name
        if wait_for_turn:
            self.turn_waiters.append((reply, result))
            if fields:
                self._write(lambda q: q.set_agent_fields(name, **fields))
        elif fields:
            self._write(lambda q: q.set_agent_fields(name, **fields), self._acked(reply, result))
        elif reply is not None:
            reply(result)
        self._mark_dirty()
        self._maybe_start_turn()

    def _configure(self, m: Configure) -> None:
        fields: dict[str, Any] = {}
        if m.model is not None:
            self.model = m.model or self.cfg.model  # "": back to the config's model
            fields["model"] = m.model
            self._event("model_set", {"model": self.model})
        if m.needs_update is not None:
            self.needs_update = m.needs_update
            fields["needs_update"] = int(m.needs_update)
        name = self.name
        result = {"agent": name, "model": self.model, "needs_update": self.needs_update}
        self._write(lambda q: q.set_agent_fields(name, **fields) if fields else None,
                    self._acked(m.reply, result))  # fmt: skip
        self._mark_dirty()

    def _set_status(self, text: str, reply: Reply | None) -> None:
        if len(text) > 2000:
            if reply is not None:
                reply(WireError("bad_request", "status text is limited to 2000 characters"))
            return
        self.status_text, self.status_set_at = text, time.time()
        at = self.status_set_at

        def record(q: Queries) -> None:
            q.set_agent_fields(self.name, status_text=text, status_set_at=at)

        def done(_: Any, error: BaseException | None) -> None:
            if reply is not None:
                reply(WireError("store_failed", str(error)) if error else {})

        self._write(record, done)
        self._mark_dirty()

    # --- helpers ------------------------------------------------------------------------

    def _write(self, op: Any, done: Any = None) -> None:
        """Queue a write for the Store. While it is being restarted, the write waits
        here (behind any earlier one, so this agent's writes keep their order)."""
        self.unwritten.append(Write(op, done))
        if len(self.unwritten) == 1:
            self._offer_unwritten()

    def _offer_unwritten(self) -> None:
        while self.unwritten:
            if not self.ctx.refs.tell("store", self.unwritten[0]):
                self._retry_writes_later()
                return
            self.unwritten.popleft()

    def _retry_writes_later(self) -> None:
        me = self.actor_ref
        self.ctx.io.call_later(WRITE_RETRY_SECONDS, lambda: tell_quietly(me, _RetryWrites()))

    def _notify(self, to: str, body: str, kind: str = "event") -> None:
        """A system message about this agent, to the manager (or the operator); with
        [federation] manager = "agent@hive", the manager is on another hive."""
        fed = self.ctx.config.federation
        if to == MANAGER and fed is not None and fed.manager:
            to = fed.manager  # through the outbox, like any send to another hive
        elif to == MANAGER and (
            self.name == MANAGER or self.ctx.refs.get(f"agent:{MANAGER}") is None
        ):
            to = OPERATOR
        self.ctx.refs.tell(
            "bus", Send(SYSTEM, to, body, kind="event", meta={"about": self.name, "event": kind})
        )

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        name = self.name
        self._write(lambda q: q.insert_event(name, kind, data))
        self.ctx.refs.tell(
            "hub", Publish("event", f"{name}:{kind}", {"agent": name, "kind": kind, **data})
        )

    def _set_turn_state(self, state: str) -> None:
        if state != self.turn_state:
            self.turn_state = state
            self._mark_dirty()

    def _mark_depth(self) -> None:
        """The inbox's depth changed (a message in, handed over, acknowledged): publish
        the row, but for this alone at most once per ``DEPTH_PUBLISH_SECONDS``. Published
        per message, a steady stream cost every message four more actor messages and a
        Store round trip on other threads (the hub, its two feeds, the Bus's
        ``InboxDepth``, an empty write), which woke while the next message was on its
        way and showed in its latency's tail. Changes of state still publish at once
        (``_mark_dirty``), with the depth as it is then."""
        self.depth_stale = True
        if self.dirty or self.depth_armed:
            return  # a publish is on its way, or due at the next tick
        if time.monotonic() - self.published_at >= DEPTH_PUBLISH_SECONDS:
            self._mark_dirty()
            return
        # One timer for the whole hive (ctx.depth_ticker), not one per agent.
        self.depth_armed = True
        self.ctx.depth_ticker.add(self.ctx.io, self.actor_ref, _DepthDue())

    def _mark_dirty(self) -> None:
        # Bursts of changes (a flood of arrivals) publish one row, not one per change.
        # The publish rides behind this agent's writes through the Store, so whoever
        # sees the new row (failed, idle, ...) finds the turns and messages behind it
        # already committed.
        if not self.dirty:
            self.dirty = True
            me = self.actor_ref
            self._write(_noop, lambda _v, _e: tell_quietly(me, _PublishDirty()))

    def _acked(self, reply: Reply | None, result: Any) -> Any:
        """A store completion that publishes the row and answers ``reply`` with
        ``result`` once the write has committed."""
        me = self.actor_ref

        def done(_: Any, error: BaseException | None) -> None:
            tell_quietly(me, _Acked(reply, result, error))

        return done

    def _publish_turn(self, kind: str, turn: Turn) -> None:
        self.ctx.refs.tell(
            "hub",
            Publish(
                kind,
                str(turn.id),
                {"agent": self.name, "turn_id": turn.id, "message_ids": list(turn.message_ids),
                 "kick_note": turn.kick_note, "last_turn": self.last_turn},
            ),
        )  # fmt: skip

    def status_row(self) -> AgentStatus:
        """This agent's row for the hub, hivectl and the dashboard (hive.status)."""
        running = not (
            self.stopped or self.paused or self.failed or self.needs_login or self.over_budget
        )
        return {
            "name": self.name,
            "parent": self.cfg.parent,
            "runtime": self.cfg.runtime,
            "sandbox": self.cfg.sandbox,
            "running": running,
            "paused": self.paused,
            "stopped": self.stopped,
            "deployed_sha": self.deployed_sha,
            "failed": self.failed,
            "failed_reason": self.failed_reason,
            "needs_login": self.needs_login,
            "needs_update": self.needs_update,
            "over_budget": bool(self.over_budget),
            "budget_reason": self.over_budget,
            "cost_today_usd": round(self.ctx.spend.today(self.name, time.time()).cost_usd, 6),
            "turn_state": self.turn_state,
            "queue_reason": self.queue_reason if self.queued else "",
            "turn_id": self.turn.id if self.turn else None,
            "active_model": self.model,
            "last_turn": cast("LastTurn | None", self.last_turn),
            "status_text": self.status_text,
            "status_set_at": self.status_set_at if running else None,
            "inbox_depth": len(self.pending) + len(self.unacked),
            "retry_at": self.retry_at,
            "crashes_in_window": len(self.crash_times),
            "url": f"/agents/{self.name}",
        }

    def _publish(self) -> None:
        self.dirty = self.depth_stale = False
        self.published_at = time.monotonic()
        self.ctx.refs.tell("hub", Publish("agent", self.name, self.status_row()))
        # For inbox_cap: the depth, and the newest message it counts.
        depth = len(self.pending) + len(self.unacked)
        self.ctx.refs.tell("bus", InboxDepth(self.name, depth, self.seen_id))


# What each way a turn can end asks of its agent (AgentActor._turn_ended).
_END_HANDLERS: dict[ExitClass, Callable[[AgentActor, TurnOutcome, float], None]] = {
    ExitClass.OK: AgentActor._ended_ok,
    ExitClass.CRASH: AgentActor._ended_crash,
    ExitClass.NEEDS_LOGIN: AgentActor._ended_needs_login,
    ExitClass.RATE_LIMITED: AgentActor._ended_rate_limited,
    ExitClass.COMPACT_RETRY: AgentActor._ended_compact_retry,
    ExitClass.CANCELLED: AgentActor._ended_cancelled,
}


def _urgent(envs: Any) -> bool:
    """Does this mail come from the operator or the manager (first in the turn queue)?"""
    return any(e.sender in (OPERATOR, MANAGER) for e in envs)
