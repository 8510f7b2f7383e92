"""Claude turns, per-turn process vs persistent session: message arrival -> model request, and
memory per agent, through a real supervisor; plus the bare CLI for scale.

    bash scripts/install-claude.sh && .venv/bin/python bench/bench_claude_turns.py [--turns 8]

Part 1 runs a real hive-supervisor (tests.hive_harness) with two claude agents that run the
REAL claude CLI against the fake Anthropic API (tests/fake_anthropic.py): ``oneshot`` (one
process per turn) and ``keeper`` (``persistent = true``). For each turn it times the operator's
``send`` on the admin socket until the model request reaches the fake API (admin socket, Bus,
Store commit, Agent actor, turn runner, process start or stdin line, the CLI, the MCP relay),
and takes the memory of the turn's process tree (claude + the relay) while that request is held
open: RSS, and USS (what one more agent adds; the claude binary's pages are shared). Before
each per-turn turn it times one bare ``claude -p`` start (bench.limits.BareClaude), so each
ratio compares two starts made under the same load.

Part 2 drives the CLI directly (no supervisor; the relay on tests/agent_socket_stub.py) to
separate the CLI's own cost from the supervisor's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.limits import BareClaude, cpu_ms  # noqa: E402
from hive.config import AgentConfig, HiveConfig  # noqa: E402
from hive.process import AgentPaths  # noqa: E402
from hive.runtimes.base import TurnInput  # noqa: E402
from hive.runtimes.claude import ClaudeRuntime  # noqa: E402
from hive.wire import Envelope  # noqa: E402
from tests.agent_socket_stub import AgentSocketStub  # noqa: E402
from tests.claude_cli import DEFAULT_BIN  # noqa: E402
from tests.claude_hive import ClaudeHive, claude_agent, hive_toml  # noqa: E402
from tests.fake_anthropic import FakeAnthropic, Hang, Text  # noqa: E402
from tests.hive_harness import RunningHive  # noqa: E402

MIB = 2**20


@dataclass
class Memory:
    rss: float  # MiB, claude + its children
    uss: float  # MiB, pages only this tree holds

    @classmethod
    def of_tree(cls, pid: int) -> Memory:
        root = psutil.Process(pid)
        infos = []
        for proc in [root, *root.children(recursive=True)]:
            try:
                infos.append(proc.memory_full_info())
            except psutil.NoSuchProcess:
                pass  # a short-lived helper the CLI ran (git, a shell) ended meanwhile
        return cls(sum(i.rss for i in infos) / MIB, sum(i.uss for i in infos) / MIB)


@dataclass
class Mode:
    label: str
    arrival_ms: list[float] = field(default_factory=list)
    handoff_ms: list[float] = field(default_factory=list)  # send -> process spawned / line
    hive_ms: list[float] = field(default_factory=list)  # turn asked for -> process spawned
    turn_ms: list[float] = field(default_factory=list)
    busy: list[Memory] = field(default_factory=list)
    idle: list[Memory] = field(default_factory=list)
    first_arrival_ms: float = 0.0
    pids: set[int] = field(default_factory=set)
    # A bare `claude -p` start timed just before each turn (per-turn mode): the pair shares
    # the machine's load of that moment, so their ratio is not moved by it.
    bare_ms: list[float] = field(default_factory=list)
    # claude's own CPU until its request, the bare start's and this turn's (per-turn mode)
    bare_cpu_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def paired_ratio(self) -> float:
        """The median of (this turn's send -> request) / (the bare start just before it)."""
        return _median([a / b for a, b in zip(self.arrival_ms, self.bare_ms, strict=True)])


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _mem(values: list[Memory]) -> str:
    if not values:
        return "0 (no process)"
    return f"{_median([m.rss for m in values]):.0f} / {_median([m.uss for m in values]):.0f}"


# --- part 1: through the supervisor ---------------------------------------------------------


def bench_supervisor(turns: int, bare: BareClaude) -> list[Mode]:
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic(default=Text("ok")) as api:
        config = hive_toml(
            claude_agent("oneshot", persistent=False),
            claude_agent("keeper", persistent=True),
            dashboard=False,
        )
        hive = ClaudeHive(RunningHive.start(Path(tmp), config, env=api.env()), api)
        try:
            return [
                _bench_agent(hive, "oneshot", turns, bare),
                _bench_agent(hive, "keeper", turns, None),
            ]
        finally:
            hive.terminate()


def _bench_agent(hive: ClaudeHive, name: str, turns: int, bare: BareClaude | None) -> Mode:
    api = hive.api
    mode = Mode(name)
    for i in range(turns + 1):  # turn 0 warms up (a session pays its process start there)
        if bare is not None and i > 0:
            mode.bare_ms.append(bare.start_ms())
            mode.bare_cpu_ms.append(bare.last_cpu_ms)
        api.script(Hang(Text("ok")))
        seen = len(api.requests)
        sent_at = time.time()
        t0 = time.perf_counter()
        hive.admin("send", to=name, body=f"message {i}")
        api.wait_for_requests(seen + 1, timeout=60)
        arrival = (time.perf_counter() - t0) * 1000
        turn_id = hive.wait_until(lambda: hive.status(name)["turn_id"], what="the turn id")
        [process] = hive.wait_until(
            lambda tid=turn_id: [e for e in hive.transcript(tid) if e["kind"] == "process"],
            what="the turn's process",
        )
        pid = process["data"]["pid"]
        busy = Memory.of_tree(pid)
        claude_cpu = cpu_ms(pid)  # the request is held: the CLI waits, idle
        api.release()
        hive.wait_turns(name, i + 1)
        done = (time.perf_counter() - t0) * 1000
        api.hold()
        mode.pids.add(pid)
        if i == 0:
            mode.first_arrival_ms = arrival
            continue
        mode.arrival_ms.append(arrival)
        # The event's time is when the Store wrote it: an upper bound of the hand-off.
        mode.handoff_ms.append((process["ts"] - sent_at) * 1000)
        if "hive_ms" in process["data"]:  # per-turn processes: hive's own part, measured
            mode.hive_ms.append(float(process["data"]["hive_ms"]))
        mode.turn_ms.append(done)
        if bare is not None:
            mode.cpu_ms.append(claude_cpu)
        mode.busy.append(busy)
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            mode.idle.append(Memory.of_tree(pid))
    return mode


# --- part 2: the CLI alone --------------------------------------------------------------------


async def bench_cli(turns: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(start -> request ms, turn ms) medians: per-turn process, persistent session."""
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic(default=Text("ok")) as api:
        root = Path(tmp)
        paths = AgentPaths.for_agent("alice", root / "hive", root / "run")
        paths.ensure()
        paths.socket.parent.mkdir(parents=True)
        agent = AgentConfig(name="alice", runtime="claude")
        rt = ClaudeRuntime(
            str(DEFAULT_BIN), environ={"PATH": "/usr/bin:/bin", "HOME": tmp, **api.env()}
        )
        stub = AgentSocketStub(paths.socket)

        def turn(i: int) -> TurnInput:
            msg = Envelope(id=i, sender="bob", to="alice", body=f"message {i}")
            return TurnInput(HiveConfig(), agent, paths, i, "claude-bench", (msg,))

        async def request(n: int) -> None:
            await trio.to_thread.run_sync(api.wait_for_requests, n)

        async with trio.open_nursery() as nursery:
            await nursery.start(stub.serve)
            start_ms, turn_ms = [], []
            for i in range(turns):
                spec = rt.build(turn(i))
                api.script(Hang(then=Text("ok")))
                t0 = time.perf_counter()
                proc = await trio.lowlevel.open_process(
                    list(spec.argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=spec.env,
                    cwd=spec.cwd,
                )
                assert proc.stdin is not None
                await proc.stdin.send_all(spec.stdin or b"")
                await proc.stdin.aclose()
                await request(len(api.requests) + 1)
                start_ms.append((time.perf_counter() - t0) * 1000)
                api.release()
                await proc.wait()
                turn_ms.append((time.perf_counter() - t0) * 1000)
                api.hold()

            spec = rt.build_session(turn(100))
            proc = await trio.lowlevel.open_process(
                list(spec.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=spec.env,
                cwd=spec.cwd,
            )
            assert proc.stdin is not None and proc.stdout is not None
            stdout = proc.stdout
            buf = b""

            async def until_result() -> None:
                nonlocal buf
                while True:
                    while b"\n" not in buf:
                        buf += await stdout.receive_some(65536)
                    line, _, buf = buf.partition(b"\n")
                    if any(rt.is_turn_end(e) for e in rt.parse_line(line)):
                        return

            await proc.stdin.send_all(spec.stdin or b"")
            await until_result()  # the session's first turn pays the process start
            p_start, p_turn = [], []
            for i in range(turns):
                api.script(Hang(then=Text("ok")))
                t0 = time.perf_counter()
                await proc.stdin.send_all(rt.turn_message(turn(200 + i)))
                await request(len(api.requests) + 1)
                p_start.append((time.perf_counter() - t0) * 1000)
                api.release()
                await until_result()
                p_turn.append((time.perf_counter() - t0) * 1000)
                api.hold()
            await proc.stdin.aclose()
            await proc.wait()
            nursery.cancel_scope.cancel()
    return (_median(start_ms), _median(turn_ms)), (_median(p_start), _median(p_turn))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=8)
    turns = parser.parse_args().turns

    with BareClaude() as bare:
        oneshot, keeper = bench_supervisor(turns, bare)
    bare_start = _median(oneshot.bare_ms)
    print(
        f"bare claude -p start (no MCP server) -> model request, here, now: {bare_start:.0f} ms "
        f"(median of {len(oneshot.bare_ms)}, each timed just before one per-turn turn)"
    )
    print(f"through the supervisor, {turns} turns each after a warm-up (medians)")
    print(
        f"{'mode':12s} {'send -> request ms':>19s} {'turn ms':>8s} "
        f"{'in turn RSS/USS MiB':>20s} {'idle RSS/USS MiB':>17s} {'processes':>9s}"
    )
    for mode, label in ((oneshot, "per-turn"), (keeper, "persistent")):
        print(
            f"{label:12s} {_median(mode.arrival_ms):19.1f} {_median(mode.turn_ms):8.1f} "
            f"{_mem(mode.busy):>20s} {_mem(mode.idle):>17s} {len(mode.pids):9d}"
        )
    print(
        f"persistent: first turn (session start) send -> request {keeper.first_arrival_ms:.0f} ms"
    )
    ratio = _median(oneshot.arrival_ms) / _median(keeper.arrival_ms)
    print(f"send -> request, per-turn / persistent: {ratio:.1f}x")
    print(
        f"send -> request / bare claude -p start: per-turn "
        f"{_median(oneshot.arrival_ms) / bare_start:.2f}x of the medians, "
        f"{oneshot.paired_ratio():.2f}x the median of the {turns} pairs (goal <= 1.15x); "
        f"persistent {_median(keeper.arrival_ms) / bare_start:.3f}x (goal p50 <= 30 ms)"
    )
    cpu_ratio = _median([a / b for a, b in zip(oneshot.cpu_ms, oneshot.bare_cpu_ms, strict=True)])
    print(
        f"per-turn: the CLI's own CPU until its request {_median(oneshot.cpu_ms):.0f} ms, the "
        f"bare start's {_median(oneshot.bare_cpu_ms):.0f} ms: {cpu_ratio:.2f}x (paired; CPU "
        "time moves far less with the load than wall time)"
    )
    print(
        f"per-turn: hive's own part, the Agent's start -> process spawned (sandbox prepare, "
        f"command, config, spawn), median {_median(oneshot.hive_ms):.2f} ms "
        f"= {_median(oneshot.hive_ms) / bare_start * 100:.2f}% of the bare start"
    )

    (c_start, c_turn), (p_start, p_turn) = trio.run(bench_cli, turns)
    print("\nthe CLI alone, no supervisor (medians)")
    print(f"{'mode':12s} {'start -> request ms':>20s} {'turn ms':>8s}")
    print(f"{'per-turn':12s} {c_start:20.1f} {c_turn:8.1f}")
    print(f"{'persistent':12s} {p_start:20.1f} {p_turn:8.1f}")
    print(
        "the supervisor's part (send -> turn process spawned / stdin line written, <=): "
        f"per-turn {_median(oneshot.handoff_ms):.1f} ms, "
        f"persistent {_median(keeper.handoff_ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
