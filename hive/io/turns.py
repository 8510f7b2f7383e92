"""Turn processes: start one per turn, stream its events, cancel it, report how it ended.

Runs on the trio thread. Agents call ``start`` and ``cancel`` from their own threads; both
return at once. Each turn's process runs in its own process group so that a cancel takes
its children (MCP servers, tools) down with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from hive.io.bridge import IoBridge
from hive.runtimes import get_runtime
from hive.runtimes.base import ExitClass, TurnEvent, TurnInput, TurnOutcome
from hive.sandboxes import get_sandbox

log = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 40
MAX_KEPT_EVENTS = 500


@dataclass
class _Running:
    turn_id: int
    process: trio.Process | None = None
    cancelled: bool = False


class TurnRunner:
    def __init__(self, bridge: IoBridge) -> None:
        self.bridge = bridge
        self.running: dict[str, _Running] = {}

    # --- called from actor threads -------------------------------------------------------

    def start(
        self,
        turn: TurnInput,
        on_event: Callable[[TurnEvent], None],
        on_end: Callable[[TurnOutcome], None],
    ) -> None:
        self.bridge.spawn(self._run, turn, on_event, on_end)

    def cancel(self, agent: str) -> None:
        self.bridge.call_soon(self._cancel, agent)

    # --- trio thread ---------------------------------------------------------------------

    def _cancel(self, agent: str) -> None:
        r = self.running.get(agent)
        if r is None:
            return
        r.cancelled = True
        if r.process is not None:
            _signal_group(r.process, signal.SIGTERM)
            self.bridge.spawn(self._kill_after_grace, r)

    async def _kill_after_grace(self, r: _Running) -> None:
        await trio.sleep(CANCEL_GRACE_SECONDS)
        if r.process is not None and r.process.returncode is None:
            _signal_group(r.process, signal.SIGKILL)

    async def _run(
        self,
        turn: TurnInput,
        on_event: Callable[[TurnEvent], None],
        on_end: Callable[[TurnOutcome], None],
    ) -> None:
        agent = turn.agent.name
        state = _Running(turn.turn_id)
        self.running[agent] = state
        try:
            outcome = await self._play(turn, state, on_event)
        except Exception as exc:
            log.exception("turn %s of %s could not run", turn.turn_id, agent)
            outcome = TurnOutcome(ExitClass.CRASH, f"turn could not start: {exc}")
        finally:
            if self.running.get(agent) is state:
                del self.running[agent]
        on_end(outcome)

    async def _play(
        self, turn: TurnInput, state: _Running, on_event: Callable[[TurnEvent], None]
    ) -> TurnOutcome:
        runtime = get_runtime(turn.agent.runtime)
        sandbox = get_sandbox(turn.agent.sandbox)
        sandbox.prepare(turn.agent, turn.paths)
        spec = sandbox.wrap(runtime.build(turn), turn.agent, turn.paths)
        env = spec.env  # complete: the runtime chose it (see ProcessSpec)
        if state.cancelled:
            return TurnOutcome(ExitClass.CANCELLED, "cancelled before start")
        process = await trio.lowlevel.open_process(
            list(spec.argv),
            stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(spec.cwd) if spec.cwd else None,
            env=env,
            start_new_session=True,
        )
        state.process = process
        # The first events (init: which MCP servers started) and the last (result) are
        # what classify() reads; a long turn's middle is only in the transcript.
        first_events: list[TurnEvent] = []
        events: deque[TurnEvent] = deque(maxlen=MAX_KEPT_EVENTS)
        stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        try:
            async with trio.open_nursery() as nursery:
                if spec.stdin is not None and process.stdin is not None:
                    nursery.start_soon(_feed_stdin, process.stdin, spec.stdin)
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(
                    _read_events,
                    process.stdout,
                    runtime.parse_line,
                    first_events,
                    events,
                    on_event,
                )
                nursery.start_soon(
                    _read_stderr, process.stderr, stderr_tail, turn.paths.log, turn.turn_id
                )
                await process.wait()
        finally:
            if process.returncode is None:
                # Shutdown or an error here: leave no turn process behind.
                _signal_group(process, signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await process.wait()
        if state.cancelled:
            return TurnOutcome(ExitClass.CANCELLED, "cancelled by the operator", process.returncode)
        returncode = process.returncode if process.returncode is not None else -1
        kept = first_events + list(events)  # disjoint: the first few, then the latest
        outcome = runtime.classify(returncode, kept, "\n".join(stderr_tail))
        if outcome.exit_code is None:
            outcome = TurnOutcome(outcome.exit_class, outcome.detail, process.returncode)
        return outcome


def _signal_group(process: trio.Process, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _feed_stdin(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the process exited without reading: its exit code tells the story
    finally:
        await stream.aclose()


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buf = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buf:
                yield buf
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            yield buf[:nl]
            buf = buf[nl + 1 :]


FIRST_EVENTS_KEPT = 20


async def _read_events(
    stream: trio.abc.ReceiveStream,
    parse: Callable[[bytes], list[TurnEvent]],
    first: list[TurnEvent],
    last: deque[TurnEvent],
    on_event: Callable[[TurnEvent], None],
) -> None:
    seen = 0
    async for line in _lines(stream):
        try:
            parsed = parse(line)
        except Exception:
            log.exception("could not parse a turn output line")
            continue
        for ev in parsed:
            seen += 1
            if seen <= FIRST_EVENTS_KEPT:
                first.append(ev)
            else:
                last.append(ev)
            on_event(ev)


async def _read_stderr(
    stream: trio.abc.ReceiveStream, tail: deque[str], log_path: Any, turn_id: int
) -> None:
    # The supervisor's own per-agent log: what the dashboard's log viewer shows where
    # journald is absent.
    with open(log_path, "a", encoding="utf-8") as f:
        async for raw in _lines(stream):
            line = raw.decode("utf-8", "replace")
            tail.append(line)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            f.write(f"{stamp} turn={turn_id} {line}\n")
            f.flush()
