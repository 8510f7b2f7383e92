"""Persistent sessions: one long-lived runtime process per agent plays many of its turns.

An agent with ``persistent = true`` (claude runtime) keeps one process between turns, so a
turn starts with one line on that process's stdin instead of a process start, an MCP server
start and a history reload. The rules:

- The first turn starts ``runtime.build_session(turn)``; its stdin bytes are that turn and
  stdin stays open. Each later turn writes ``runtime.turn_message(turn)``.
- A turn ends at the first event for which ``runtime.is_turn_end`` is true and is classified
  from the events since it began, as a process that exited 0 would be.
- ``runtime.session_key(turn)`` says what the process was started with (model, tools, MCP
  servers, prompt, environment). When it changes, or the Agent asks for a fresh process
  (the last turn did not end ``ok``, or the turn is a compact retry: ``fresh_process``),
  stdin is closed (the CLI exits 0 at EOF) and a new process starts; it resumes the same
  conversation, so only the process is new.
- A process that dies in the middle of a turn crashes that turn (crash watch takes it from
  there); one that dies between turns is simply started again for the next.
- Cancel kills the process group (hive.io.turns); the next turn starts a new process.
- A process is closed when its Agent says so (``close_idle``): idle for
  ``HiveConfig.session_idle_seconds``, so a paused or stopped agent does not hold its memory
  for ever; the Supervisor closes a removed agent's at once.

Every task here belongs to the IO loop's nursery: a session's process lives as long as its
``serve`` task, and the supervisor's shutdown cancels it (the process group is killed).
"""

from __future__ import annotations

import logging
import math
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import trio

from hive.io.bridge import IoBridge
from hive.io.group import open_group, run_group
from hive.io.streams import (
    STDERR_TAIL_LINES,
    EventLog,
    agent_log,
    lines,
    log_stderr,
    parse_events,
    signal_group,
)
from hive.process import ProcessSpec
from hive.runtimes.base import ExitClass, Runtime, TurnEvent, TurnInput, TurnOutcome
from hive.sandboxes.base import Sandbox

log = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10.0  # EOF on stdin -> exit 0; after this the group is killed


@runtime_checkable
class SessionRuntime(Runtime, Protocol):
    """A runtime that can play many turns in one process (claude's stream-json input)."""

    def build_session(self, turn: TurnInput) -> ProcessSpec: ...

    def turn_message(self, turn: TurnInput) -> bytes: ...

    def is_turn_end(self, event: TurnEvent) -> bool: ...

    def session_key(self, turn: TurnInput) -> str: ...


class Cancellable(Protocol):
    """The running turn as hive.io.turns tracks it (to cancel it)."""

    process: trio.Process | None
    cancelled: bool


@dataclass(eq=False)
class Session:
    """One agent's long-lived runtime process and the turn it is playing."""

    agent: str
    key: str
    process: trio.Process
    stdin: trio.abc.SendStream
    events: trio.MemoryReceiveChannel[TurnEvent]
    log_path: Path
    turn_id: int = 0  # the turn playing now (or last): stamps stderr lines in the agent log
    turns: int = 0  # turns played to the end
    busy: bool = False
    retire: bool = False  # the next turn must start a new process
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    exited: trio.Event = field(default_factory=trio.Event)

    @property
    def alive(self) -> bool:
        return not self.exited.is_set() and self.process.returncode is None


class Sessions:
    """The persistent session processes of every agent (at most one per agent)."""

    def __init__(self, bridge: IoBridge) -> None:
        self.bridge = bridge
        self.by_agent: dict[str, Session] = {}
        # Closed (EOF sent) but not exited yet: their memory is still in use
        # (hive.io.turns.TurnRunner.leaders counts it for the turn admission).
        self.closing: set[Session] = set()

    async def play(
        self,
        turn: TurnInput,
        running: Cancellable,
        runtime: SessionRuntime,
        sandbox: Sandbox,
        on_event: Callable[[TurnEvent], None],
        fresh_process: str = "",
    ) -> TurnOutcome:
        """Play ``turn`` in the agent's session process, starting one if needed (always,
        when the Agent says why in ``fresh_process``)."""
        agent = turn.agent.name
        key = runtime.session_key(turn)
        session = self.by_agent.get(agent)
        if session is not None:
            why = _why_new_process(session, key, fresh_process)
            if why:
                agent_log(turn.paths.log, f"closing session process {session.process.pid}: {why}")
                await self.close(session)
                session = None
        if running.cancelled:
            return TurnOutcome(ExitClass.CANCELLED, "cancelled before start")
        if session is None:
            # build_session reads and writes the agent's session file: off the trio thread.
            built = await trio.to_thread.run_sync(runtime.build_session, turn)
            spec = sandbox.wrap(built, turn.agent, turn.paths)
            session = await self.bridge.nursery.start(
                self._serve, agent, key, spec, runtime, turn.paths.log
            )
            data = spec.stdin or b""
            reused = False
        else:
            data = runtime.turn_message(turn)
            reused = True
        session.turn_id = turn.turn_id
        session.busy = True
        running.process = session.process
        if running.cancelled:  # the cancel came while the process was starting
            signal_group(session.process, signal.SIGTERM)
        on_event(
            TurnEvent(
                "process",
                {"pid": session.process.pid, "persistent": True, "reused": reused,
                 "turns_before": session.turns},
            )
        )  # fmt: skip
        try:
            return await self._play_turn(session, data, running, runtime, on_event)
        finally:
            session.busy = False

    async def _play_turn(
        self,
        session: Session,
        data: bytes,
        running: Cancellable,
        runtime: SessionRuntime,
        on_event: Callable[[TurnEvent], None],
    ) -> TurnOutcome:
        _drop_stale_events(session)
        try:
            await session.stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it died: the events channel ends and the exit code tells the story
        events = EventLog()
        ended = False
        async for event in session.events:
            events.add(event)
            on_event(event)
            if runtime.is_turn_end(event):
                ended = True
                break
        if running.cancelled:
            session.retire = True
            await self.close(session)
            return TurnOutcome(
                ExitClass.CANCELLED, "cancelled by the operator", session.process.returncode
            )
        if not ended:
            # The process died in the middle of the turn.
            await session.exited.wait()
            returncode = session.process.returncode
            code = returncode if returncode is not None else -1
            outcome = runtime.classify(code, events.kept(), "\n".join(session.stderr_tail))
            return _with_code(outcome, returncode)
        session.turns += 1
        # A failed turn gets a fresh process next time: the Agent decides that (it says
        # so in the next turn's fresh_process).
        return _with_code(runtime.classify(0, events.kept(), ""), 0)

    async def close_idle(self, agent: str, why: str) -> None:
        """Close the agent's session process unless a turn is playing in it (the Agent
        decided it has been idle long enough, or that it is gone)."""
        session = self.by_agent.get(agent)
        if session is None or session.busy:
            return
        agent_log(session.log_path, f"closing session process {session.process.pid}: {why}")
        await self.close(session)

    async def close(self, session: Session) -> None:
        """End a session process: EOF on stdin, then the group is killed after a grace."""
        session.retire = True
        if self.by_agent.get(session.agent) is session:
            del self.by_agent[session.agent]
        self.closing.add(session)
        try:
            await session.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        try:
            with trio.move_on_after(CLOSE_GRACE_SECONDS):
                await session.exited.wait()
                return
            signal_group(session.process, signal.SIGKILL)
            await session.exited.wait()
        finally:
            self.closing.discard(session)

    async def _serve(
        self,
        agent: str,
        key: str,
        spec: ProcessSpec,
        runtime: Runtime,
        log_path: Path,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own one session process from start to exit, and its output readers."""
        process = await open_group(spec, stdin_pipe=True)
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        send, receive = trio.open_memory_channel[TurnEvent](math.inf)
        session = Session(agent, key, process, process.stdin, receive, log_path)
        previous = self.by_agent.get(agent)
        if previous is not None and previous.alive:
            log.warning("agent %s: a second session process started; closing the first", agent)
            self.bridge.nursery.start_soon(self.close, previous)
        self.by_agent[agent] = session
        task_status.started(session)
        stdout, stderr = process.stdout, process.stderr
        try:
            await run_group(process, [
                partial(_pump_events, stdout, runtime.parse_line, send, lambda: session.busy),
                partial(log_stderr, stderr, session.stderr_tail, log_path,
                        lambda: session.turn_id),
            ])  # fmt: skip
        finally:
            if self.by_agent.get(agent) is session:
                del self.by_agent[agent]
            session.exited.set()
            if not session.retire and not session.busy:
                log.info("agent %s: session process %s exited with %s between turns",
                         agent, process.pid, process.returncode)  # fmt: skip


async def _pump_events(
    stream: trio.abc.ReceiveStream,
    parse: Callable[[bytes], list[TurnEvent]],
    send: trio.MemorySendChannel[TurnEvent],
    in_turn: Callable[[], bool],
) -> None:
    """Events go to the playing turn, which reads them as they come. Between turns nobody
    reads them: they are dropped at once rather than queued without bound until the next
    turn drops them (a process can print all it likes while it is idle)."""
    async with send:
        async for line in lines(stream):
            if not in_turn():
                log.debug("session event between turns dropped")
                continue
            for event in parse_events(parse, line):
                send.send_nowait(event)


def _drop_stale_events(session: Session) -> None:
    """Events printed between turns belong to no turn: log and drop them."""
    while True:
        try:
            event = session.events.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        log.debug("agent %s: event between turns dropped: %s", session.agent, event.kind)


def _why_new_process(session: Session, key: str, fresh_process: str) -> str:
    if not session.alive:
        return "it exited"
    if fresh_process:
        return fresh_process
    if session.retire:
        return "it is being closed"
    if session.key != key:
        return "the model, tools, MCP servers, prompt or environment changed"
    return ""


def _with_code(outcome: TurnOutcome, code: int | None) -> TurnOutcome:
    if outcome.exit_code is not None:
        return outcome
    return TurnOutcome(outcome.exit_class, outcome.detail, code)
