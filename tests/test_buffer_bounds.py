"""Item 12 (issue 9): every buffer the daemon keeps for someone else has a bound and a policy.

- replies a client does not read: past ``max_queued_reply_bytes`` the client is dropped;
- a turn's output line: cut at ``MAX_LINE_BYTES`` with a marker, never held whole;
- a turn's events: past ``max_turn_events`` counted, not stored or published;
- an agent dir's size: ``prepare()`` walks it in a worker thread, not on the trio thread.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from hive.config import AgentConfig, HiveConfig
from hive.io.streams import MAX_LINE_BYTES, STDERR_LINE_BYTES
from hive.process import AgentPaths
from hive.runtimes.base import TurnInput, TurnOutcome
from hive.sandboxes import ProcessSandbox
from hive.wire import encode_frame, request
from tests.hive_harness import RunningHive
from tests.test_socket_limits import connect, served

# --- replies nobody reads -------------------------------------------------------------------

QUEUE_CAP = 1 << 20

SLOW_READER = f"""
[hive]
max_queued_reply_bytes = {QUEUE_CAP}

[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""


def test_a_client_that_never_reads_its_replies_is_dropped(tmp_path: Path) -> None:
    hive = RunningHive.start(tmp_path / "hive", SLOW_READER)
    try:
        bob = hive.agent_socket("bob")
        batch = b"".join(encode_frame(request(i, "whoami")) for i in range(1, 1001))
        with closing(connect(bob)) as sock:
            # Ten times the cap in replies, and not one read until the daemon gives up.
            try:
                for _ in range(QUEUE_CAP * 10 // (50 * 1000)):
                    sock.sendall(batch)
            except (BrokenPipeError, ConnectionResetError):
                pass  # dropped while still sending
            hive.wait_until(
                lambda: (
                    "connection dropped: it does not read its replies"
                    in hive.log_path.read_text(errors="replace")
                ),
                what="the slow reader to be dropped",
            )
            # The connection ends: EOF after what was written before the drop, or a reset
            # (the daemon closed with the client's requests still unread).
            read = 0
            try:
                while chunk := sock.recv(1 << 20):
                    read += len(chunk)
            except ConnectionResetError:
                pass
            assert read < QUEUE_CAP * 10
        hive.wait_until(lambda: served(bob, "whoami"), what="bob's socket to serve again")
    finally:
        hive.terminate()


# --- what a turn prints ---------------------------------------------------------------------

FLOOD_BYTES = 256 << 20
FLOOD_EVENTS = 5000
EVENT_CAP = 200
BIG_EVENTS = 20  # of 1 MiB each
EVENT_BYTE_CAP = 4 << 20

FLOODER = """#!/bin/sh
# Stands in for the helper interpreter: floods stdout/stderr first, then plays the turn.
if [ "$FLOOD" = line ]; then
    head -c {bytes} /dev/zero | tr '\\0' x; echo
    head -c {bytes} /dev/zero | tr '\\0' y >&2; echo >&2
elif [ "$FLOOD" = events ]; then
    yes '{{"event": "text", "text": "again"}}' | head -n {events}
elif [ "$FLOOD" = big-events ]; then
    for i in $(seq {big_events}); do
        printf '{{"event": "text", "text": "'; head -c 1048576 /dev/zero | tr '\\0' z; echo '"}}'
    done
fi
exec {python} "$@"
"""

FLOODING = """
[hive]
agent_python = "{wrapper}"
max_turn_events = {cap}
max_turn_event_bytes = {byte_cap}

[[agent]]
name = "manager"

[[agent]]
name = "liner"
env = {{FLOOD = "line"}}
[[agent.script]]
do = [{{op = "reply", body = "done {{body}}"}}]

[[agent]]
name = "chatty"
env = {{FLOOD = "events"}}
[[agent.script]]
do = [{{op = "reply", body = "done {{body}}"}}]

[[agent]]
name = "heavy"
env = {{FLOOD = "big-events"}}
[[agent.script]]
do = [{{op = "reply", body = "done {{body}}"}}]
"""


@pytest.fixture
def flooding(tmp_path: Path) -> Iterator[RunningHive]:
    wrapper = tmp_path / "flood-python"
    wrapper.write_text(
        FLOODER.format(
            bytes=FLOOD_BYTES, events=FLOOD_EVENTS, big_events=BIG_EVENTS, python=sys.executable
        )
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    hive = RunningHive.start(
        tmp_path / "hive", FLOODING.format(wrapper=wrapper, cap=EVENT_CAP, byte_cap=EVENT_BYTE_CAP)
    )
    yield hive
    hive.terminate()


def ended_turn(hive: RunningHive, agent: str) -> dict[str, Any]:
    hive.admin("send", to=agent, body="go")
    hive.wait_until(
        lambda: any(m["body"] == "done go" for m in hive.messages("operator")),
        timeout=120,
        what=f"{agent}'s turn to answer",
    )
    status = hive.wait_until(
        lambda: (s := hive.status(agent))["last_turn"] and s, what=f"{agent}'s turn to end"
    )
    last: dict[str, Any] = status["last_turn"]
    assert last["exit_class"] == "ok", last
    return last


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


def test_a_huge_output_line_is_cut_with_a_marker_not_held(flooding: RunningHive) -> None:
    hive = flooding
    before = peak_rss_bytes(hive.process.pid)
    turn = ended_turn(hive, "liner")
    # 256 MB on stdout and 256 MB on stderr: the daemon never held either line whole.
    grown = peak_rss_bytes(hive.process.pid) - before
    print(f"peak RSS grew by {grown >> 20} MiB")
    assert grown < FLOOD_BYTES // 4
    events = hive.admin("transcript", turn_id=turn["id"])["events"]
    cut = [e["data"] for e in events if e["kind"] == "output_truncated"]
    assert cut == [{"kept": MAX_LINE_BYTES, "dropped": FLOOD_BYTES - MAX_LINE_BYTES}]
    log = hive.state_dir / "agents" / "liner" / "agent.log"
    assert log.stat().st_size < STDERR_LINE_BYTES + (1 << 20)  # stderr is cut shorter
    assert f"[hive: line cut at {STDERR_LINE_BYTES} bytes" in log.read_text(errors="replace")


def test_events_past_the_cap_are_counted_not_kept(flooding: RunningHive) -> None:
    hive = flooding
    turn = ended_turn(hive, "chatty")
    events = hive.admin("transcript", turn_id=turn["id"])["events"]
    assert len(events) == EVENT_CAP + 1
    capped = {"cap": EVENT_CAP, "byte_cap": EVENT_BYTE_CAP}
    assert events[-1]["kind"] == "events_capped" and events[-1]["data"] == capped
    dropped = hive.wait_until(
        lambda: [
            e for e in hive.admin("events", agent="chatty")["events"]
            if e["kind"] == "turn_events_dropped"
        ],
        what="the dropped-events count",
    )  # fmt: skip
    assert dropped[0]["data"]["turn_id"] == turn["id"]
    assert dropped[0]["data"]["dropped"] > FLOOD_EVENTS - EVENT_CAP


def test_events_past_the_byte_budget_are_counted_not_kept(flooding: RunningHive) -> None:
    """Fewer, bigger events: 20 of 1 MiB against a 4 MiB budget."""
    hive = flooding
    turn = ended_turn(hive, "heavy")
    events = hive.admin("transcript", turn_id=turn["id"])["events"]
    texts = [e for e in events if e["kind"] == "text"]
    assert 0 < len(texts) < EVENT_BYTE_CAP // (1 << 20)
    assert sum(len(e["data"]["text"]) for e in texts) <= EVENT_BYTE_CAP
    assert events[-1]["kind"] == "events_capped"


# --- prepare() and the trio thread ----------------------------------------------------------


class HeldSandbox(ProcessSandbox):
    """The process sandbox, whose prepare() waits (at most 5 s) until the test lets it go,
    as a walk over a huge state/ dir would, and notes which thread it ran on."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs: list[tuple[bool, threading.Thread]] = []

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        self.entered.set()
        released = self.release.wait(timeout=5)
        self.runs.append((released, threading.current_thread()))
        super().prepare(agent, paths)


async def test_prepare_does_not_hold_the_trio_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hive.io.turns
    from hive.io.bridge import IoBridge
    from hive.io.turns import TurnRunner

    held = HeldSandbox()
    monkeypatch.setattr(hive.io.turns, "get_sandbox", lambda name: held)
    config = HiveConfig(state_dir=tmp_path / "state")
    bob = AgentConfig("bob")
    paths = AgentPaths.for_agent("bob", config.state_dir, tmp_path / "run")
    turn = TurnInput(config, bob, paths, turn_id=1, model="m", messages=())
    outcomes: list[TurnOutcome] = []
    ended = trio.Event()

    def on_end(outcome: TurnOutcome) -> None:
        outcomes.append(outcome)
        ended.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            runner = TurnRunner(IoBridge(trio.lowlevel.current_trio_token(), nursery))
            runner.start(turn, lambda event: None, on_end)
            # This loop runs only while the trio thread is free: it must see prepare()
            # under way and let it go; a prepare() on the trio thread times out instead.
            while not held.entered.is_set():
                await trio.sleep(0.01)
            held.release.set()
            await ended.wait()
    trio_thread = threading.current_thread()
    assert [(released, thread is trio_thread) for released, thread in held.runs] == [(True, False)]
    assert outcomes  # the turn went on to run (its socket is absent: how it ended is moot)
    assert os.path.isdir(paths.state)


async def test_a_session_process_printing_between_turns_fills_no_queue() -> None:
    """A persistent session's events were queued without bound while no turn played, until
    the next turn dropped them. Now nothing is queued between turns."""
    import math
    import subprocess

    from hive.io.sessions import _pump_events
    from hive.io.spawn import open_process
    from hive.runtimes.base import TurnEvent
    from hive.runtimes.scripted import ScriptedRuntime

    flood = 'import sys; sys.stdout.write(\'{"event": "text"}\\n\' * 200_000)'
    process = await open_process([sys.executable, "-c", flood], stdout=subprocess.PIPE)
    assert process.stdout is not None
    send, receive = trio.open_memory_channel[TurnEvent](math.inf)
    await _pump_events(process.stdout, ScriptedRuntime().parse_line, send, lambda: False)
    await process.wait()
    assert receive.statistics().current_buffer_used == 0
