"""Turn processes: start one per turn, stream its events, cancel it, report how it ended.

Runs on the trio thread. Agents call ``start`` and ``cancel`` from their own threads; both
return at once. Each turn's process runs in its own process group so that a cancel takes
its children (MCP servers, tools) down with it.

An agent with ``persistent = true`` plays its turns in one long-lived process instead
(hive.io.sessions). What happens between turns (notes compaction, hive.notes; closing a
session process) is the Agent's decision; this module only carries out what it is told.
"""

from __future__ import annotations

import errno
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from hive.io.bridge import IoBridge
from hive.io.group import open_group, run_group
from hive.io.memory import tree_rss
from hive.io.sessions import SessionRuntime, Sessions
from hive.io.streams import (
    STDERR_TAIL_LINES,
    EventLog,
    lines,
    log_stderr,
    parse_events,
    signal_group,
)
from hive.runtimes import get_runtime
from hive.runtimes.base import ExitClass, TurnEvent, TurnInput, TurnOutcome
from hive.sandboxes import get_sandbox

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.process import ProcessSpec
    from hive.runtimes.base import Runtime
    from hive.sandboxes.base import Sandbox

log = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS = 5.0
DEFAULT_MAX_TURN_EVENTS = 10_000
DEFAULT_MAX_TURN_EVENT_BYTES = 8 << 20

# Where the IO side reports what it did for an agent: report(agent, kind, data).
Report = Callable[[str, str, dict[str, Any]], None]


@dataclass
class _Running:
    turn_id: int
    process: trio.Process | None = None
    cancelled: bool = False
    asked_at: float = 0.0  # perf_counter when the Agent asked for the turn (start)


class TurnRunner:
    """Starts, streams, cancels and reports the turn processes (and persistent sessions)."""

    def __init__(self, bridge: IoBridge) -> None:
        self.bridge = bridge
        self.running: dict[str, _Running] = {}
        self.max_turn_events = DEFAULT_MAX_TURN_EVENTS
        self.max_turn_event_bytes = DEFAULT_MAX_TURN_EVENT_BYTES
        self.sessions = Sessions(bridge)
        self.report: Report = _log_report

    def attach(self, ctx: HiveContext) -> None:
        """Settings from hive.toml and a way to record events (store + dashboard)."""
        self.max_turn_events = ctx.config.max_turn_events
        self.max_turn_event_bytes = ctx.config.max_turn_event_bytes
        self.report = _context_report(ctx)

    # --- called from actor threads -------------------------------------------------------

    def start(
        self,
        turn: TurnInput,
        on_event: Callable[[TurnEvent], None],
        on_end: Callable[[TurnOutcome], None],
        fresh_process: str = "",
        close_session: str = "",
    ) -> None:
        """Run ``turn`` (from an actor thread). ``fresh_process``: why a persistent agent
        must not reuse its session process for it, as the Agent decided ("": it may).
        ``close_session``: why a session process the agent may have left must be closed
        before the turn plays in a process of its own (the Agent decided: it is no longer
        persistent; "": none is closed)."""
        asked_at = time.perf_counter()
        self.bridge.spawn(self._run, turn, on_event, on_end, fresh_process, close_session, asked_at)

    def cancel(self, agent: str) -> None:
        self.bridge.call_soon(self._cancel, agent)

    def close_session(self, agent: str, why: str) -> None:
        """Close the agent's persistent session process, if it has one not playing a turn
        (from an actor thread: the Agent or the Supervisor decided)."""
        self.bridge.spawn(self.sessions.close_idle, agent, why)

    def sample_memory(self, on_sample: Callable[[dict[str, int]], None]) -> None:
        """Measure every agent's process trees (turn and session processes) in /proc, off
        the trio thread, and hand ``{agent: bytes}`` to ``on_sample`` (from an actor
        thread: the Admission actor asks)."""
        self.bridge.spawn(self._sample_memory, on_sample)

    # --- trio thread ---------------------------------------------------------------------

    def leaders(self) -> dict[str, list[int]]:
        """The processes that head each agent's trees: its turn's, its session's."""
        out: dict[str, list[int]] = {}
        for agent, state in self.running.items():
            if state.process is not None and state.process.returncode is None:
                out.setdefault(agent, []).append(state.process.pid)
        sessions = [*self.sessions.by_agent.values(), *self.sessions.closing]
        for session in sessions:
            if session.alive and session.process.pid not in out.get(session.agent, ()):
                out.setdefault(session.agent, []).append(session.process.pid)
        return out

    async def _sample_memory(self, on_sample: Callable[[dict[str, int]], None]) -> None:
        leaders = self.leaders()
        sizes = await trio.to_thread.run_sync(tree_rss, leaders) if leaders else {}
        on_sample(sizes)

    def _cancel(self, agent: str) -> None:
        r = self.running.get(agent)
        if r is None:
            return
        r.cancelled = True
        if r.process is not None:
            signal_group(r.process, signal.SIGTERM)
            self.bridge.spawn(self._kill_after_grace, r.process)

    async def _kill_after_grace(self, process: trio.Process) -> None:
        await trio.sleep(CANCEL_GRACE_SECONDS)
        if process.returncode is None:
            signal_group(process, signal.SIGKILL)

    async def _run(
        self,
        turn: TurnInput,
        on_event: Callable[[TurnEvent], None],
        on_end: Callable[[TurnOutcome], None],
        fresh_process: str,
        close_session: str,
        asked_at: float = 0.0,
    ) -> None:
        agent = turn.agent.name
        state = _Running(turn.turn_id, asked_at=asked_at or time.perf_counter())
        self.running[agent] = state
        capped = EventCap(on_event, self.max_turn_events, self.max_turn_event_bytes)
        try:
            outcome = await self._play(turn, state, capped, fresh_process, close_session)
        except Exception as exc:
            outcome = _could_not_run(turn, exc)
        finally:
            if self.running.get(agent) is state:
                del self.running[agent]
        if capped.dropped:
            self.report(agent, "turn_events_dropped",
                        {"turn_id": turn.turn_id, "dropped": capped.dropped,
                         "cap": self.max_turn_events,
                         "byte_cap": self.max_turn_event_bytes})  # fmt: skip
        on_end(outcome)

    async def _play(
        self,
        turn: TurnInput,
        state: _Running,
        on_event: Callable[[TurnEvent], None],
        fresh_process: str,
        close_session: str,
    ) -> TurnOutcome:
        runtime = get_runtime(turn.agent.runtime)
        sandbox = get_sandbox(turn.agent.sandbox)
        if turn.agent.persistent and isinstance(runtime, SessionRuntime):
            # Off the trio thread: prepare() walks what the agent's dir holds (100k files
            # in state/ once stalled every agent and socket ~1 s per turn). Agents prepare
            # concurrently (hive.sandboxes.uids locks the uid allocation).
            await trio.to_thread.run_sync(sandbox.prepare, turn.agent, turn.paths)
            return await self.sessions.play(turn, state, runtime, sandbox, on_event, fresh_process)
        leftover = self.sessions.by_agent.get(turn.agent.name)
        if close_session and leftover is not None:
            # A session must not run beside a turn that resumes the same conversation.
            await self.sessions.close(leftover)
        return await self._play_process(turn, state, runtime, sandbox, on_event)

    async def _play_process(
        self,
        turn: TurnInput,
        state: _Running,
        runtime: Runtime,
        sandbox: Sandbox,
        on_event: Callable[[TurnEvent], None],
    ) -> TurnOutcome:
        """Play ``turn`` in a process of its own, and classify how it ended."""
        # One worker-thread hop for all that comes before the process (prepare walks the
        # agent's dir, build reads and writes its session file): both off the trio thread.
        spec, timings = await trio.to_thread.run_sync(_prepare_and_build, sandbox, runtime, turn)
        if state.cancelled:
            return TurnOutcome(ExitClass.CANCELLED, "cancelled before start")
        process = await open_group(spec, stdin_pipe=spec.stdin is not None)
        state.process = process
        if state.cancelled:  # the cancel came while the process was starting
            signal_group(process, signal.SIGTERM)
        # What hive added between the Agent's decision and the process: the bench reads it.
        timings["hive_ms"] = round((time.perf_counter() - state.asked_at) * 1000, 3)
        on_event(TurnEvent("process", {"pid": process.pid, "persistent": False, **timings}))
        events = EventLog()
        stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        await _watch(process, spec, turn, runtime, events, stderr_tail, on_event)
        if state.cancelled:
            return TurnOutcome(ExitClass.CANCELLED, "cancelled by the operator", process.returncode)
        returncode = process.returncode if process.returncode is not None else -1
        outcome = runtime.classify(returncode, events.kept(), "\n".join(stderr_tail))
        if outcome.exit_code is None:
            outcome = TurnOutcome(outcome.exit_class, outcome.detail, process.returncode)
        return outcome


# Start failures that say the supervisor is out of something, which comes back (a client
# closes, a turn ends, the operator frees the disk): not the agent's crash.
RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOSPC, errno.EDQUOT}
)


def _could_not_run(turn: TurnInput, exc: Exception) -> TurnOutcome:
    """The outcome of a turn whose process could not be run, logged: a shortage in one line
    (it comes back at every retry of every agent while it lasts), anything else with its
    traceback."""
    cls = _start_failure_class(exc)
    agent, extra = turn.agent.name, {"agent": turn.agent.name, "turn": turn.turn_id}
    if cls == ExitClass.NO_RESOURCES:
        log.warning("turn %s of %s could not start: %s", turn.turn_id, agent, exc, extra=extra)
    else:
        log.exception("turn %s of %s could not run", turn.turn_id, agent, extra=extra)
    return TurnOutcome(cls, f"turn could not start: {exc}")


def _start_failure_class(exc: BaseException) -> ExitClass:
    """NO_RESOURCES when ``exc`` (or one in its group) is such a shortage, else CRASH.
    Counted as crashes, a few minutes without fds marked every agent with mail `failed`,
    and they stayed so after the fds came back."""
    short = isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS
    if isinstance(exc, BaseExceptionGroup):
        short = any(_start_failure_class(e) == ExitClass.NO_RESOURCES for e in exc.exceptions)
    return ExitClass.NO_RESOURCES if short else ExitClass.CRASH


def _prepare_and_build(
    sandbox: Sandbox, runtime: Runtime, turn: TurnInput
) -> tuple[ProcessSpec, dict[str, float]]:
    """A per-turn process's spec, from a worker thread: the sandbox prepared, the command
    built and wrapped; and what each step took (ms)."""
    t0 = time.perf_counter()
    sandbox.prepare(turn.agent, turn.paths)
    t1 = time.perf_counter()
    spec = sandbox.wrap(runtime.build(turn), turn.agent, turn.paths)
    t2 = time.perf_counter()
    return spec, {"prepare_ms": round((t1 - t0) * 1000, 3), "build_ms": round((t2 - t1) * 1000, 3)}


async def _watch(
    process: trio.Process,
    spec: ProcessSpec,
    turn: TurnInput,
    runtime: Runtime,
    events: EventLog,
    stderr_tail: deque[str],
    on_event: Callable[[TurnEvent], None],
) -> None:
    """Feed the turn process its stdin, read its events and stderr, until it exits."""
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout, process.stderr
    tasks: list[Callable[[], Awaitable[None]]] = []
    if spec.stdin is not None and process.stdin is not None:
        tasks.append(partial(_feed_stdin, process.stdin, spec.stdin))
    tasks.append(partial(_read_events, stdout, runtime.parse_line, events, on_event))
    tasks.append(partial(log_stderr, stderr, stderr_tail, turn.paths.log, lambda: turn.turn_id))
    await run_group(process, tasks)


class EventCap:
    """``on_event`` for a turn's events until ``cap`` events or ``byte_cap`` bytes of text
    have passed, then one ``events_capped`` marker; later events are only counted (the turn's
    own classification still sees them all, through its bounded EventLog). 300k events once
    took 469 MB of queues, rows and pushes; the byte budget stops the same with fewer,
    bigger events."""

    def __init__(
        self, on_event: Callable[[TurnEvent], None], cap: int, byte_cap: int = 8 << 20
    ) -> None:
        self.on_event = on_event
        self.cap = cap
        self.byte_cap = byte_cap
        self.passed = 0
        self.passed_bytes = 0
        self.dropped = 0

    def __call__(self, event: TurnEvent) -> None:
        if self.dropped:
            self.dropped += 1
            return
        size = _text_bytes(event.data)
        if self.passed < self.cap and self.passed_bytes + size <= self.byte_cap:
            self.passed += 1
            self.passed_bytes += size
            self.on_event(event)
            return
        self.dropped = 1
        self.on_event(TurnEvent("events_capped", {"cap": self.cap, "byte_cap": self.byte_cap}))


def _text_bytes(value: object) -> int:
    """Roughly what ``value`` weighs stored: the length of its strings, 8 per scalar."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_text_bytes(v) for v in value)
    return 8


def _log_report(agent: str, kind: str, data: dict[str, Any]) -> None:
    # In the agent's log too (hive.agentlog): what the IO side did about its output.
    extra = {"agent": agent, "turn": data.get("turn_id")}
    log.info("agent %s: %s %s", agent, kind, data, extra=extra)


def _context_report(ctx: HiveContext) -> Report:
    """Record an event for an agent: the events table and the dashboard's live feed."""
    from hive.actors.hub import Publish
    from hive.actors.store import Write

    def report(agent: str, kind: str, data: dict[str, Any]) -> None:
        _log_report(agent, kind, data)
        ctx.refs.tell("store", Write(lambda q: q.insert_event(agent, kind, data)))
        ctx.refs.tell("hub", Publish("event", f"{agent}:{kind}", {"agent": agent, "kind": kind,
                                                                 **data}))  # fmt: skip

    return report


async def _feed_stdin(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the process exited without reading: its exit code tells the story
    finally:
        await stream.aclose()


async def _read_events(
    stream: trio.abc.ReceiveStream,
    parse: Callable[[bytes], list[TurnEvent]],
    events: EventLog,
    on_event: Callable[[TurnEvent], None],
) -> None:
    async for line in lines(stream):
        for event in parse_events(parse, line):
            events.add(event)
            on_event(event)
