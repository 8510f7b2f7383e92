"""The real claude CLI per turn vs one persistent session: turn start latency and memory.

    bash scripts/install-claude.sh && .venv/bin/python bench/bench_claude_turns.py [--turns 5]

Measures, with the fake Anthropic API (tests/fake_anthropic.py) and hive-mcp on a real agent
socket (tests/agent_socket_stub.py): the time from "a turn starts" (process spawn in per-turn
mode, a stdin line in persistent mode) to the model request reaching the API, the whole turn,
and the RSS of claude plus its children (hive-mcp) while a request is in flight.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hive.config import AgentConfig, HiveConfig  # noqa: E402
from hive.process import AgentPaths  # noqa: E402
from hive.runtimes.base import TurnInput  # noqa: E402
from hive.runtimes.claude import ClaudeRuntime  # noqa: E402
from hive.wire import Envelope  # noqa: E402
from tests.agent_socket_stub import AgentSocketStub  # noqa: E402
from tests.fake_anthropic import FakeAnthropic, Hang, Text  # noqa: E402

CLAUDE = os.environ.get("HIVE_CLAUDE_BIN") or str(REPO / ".cache/claude/node_modules/.bin/claude")


def tree_rss_mib(pid: int) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return float(sum(p.memory_info().rss for p in procs)) / 2**20


async def main(turns: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic(default=Text("ok")) as api:
        root = Path(tmp)
        paths = AgentPaths.for_agent("alice", root / "hive", root / "run")
        paths.ensure()
        paths.socket.parent.mkdir(parents=True)
        agent = AgentConfig(name="alice", runtime="claude")
        rt = ClaudeRuntime(CLAUDE, environ={"PATH": "/usr/bin:/bin", "HOME": tmp, **api.env()})
        stub = AgentSocketStub(paths.socket)

        def turn(i: int) -> TurnInput:
            msg = Envelope(id=i, sender="bob", to="alice", body=f"message {i}")
            return TurnInput(HiveConfig(), agent, paths, i, "claude-bench", (msg,))

        async def first_request(n: int) -> None:
            await trio.to_thread.run_sync(api.wait_for_requests, n)

        async with trio.open_nursery() as nursery:
            await nursery.start(stub.serve)

            # per-turn mode
            start_ms, turn_ms, rss = [], [], []
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
                await first_request(len(api.requests) + 1)
                start_ms.append((time.perf_counter() - t0) * 1000)
                rss.append(tree_rss_mib(proc.pid))
                api.release()
                await proc.wait()
                turn_ms.append((time.perf_counter() - t0) * 1000)
                api.hold()
            per_turn = (
                statistics.median(start_ms),
                statistics.median(turn_ms),
                statistics.median(rss),
            )

            # persistent mode
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
            buf = b""

            async def until_result() -> None:
                nonlocal buf
                while True:
                    while b"\n" not in buf:
                        buf += await proc.stdout.receive_some(65536)  # type: ignore[union-attr]
                    line, _, buf = buf.partition(b"\n")
                    if any(rt.is_turn_end(e) for e in rt.parse_line(line)):
                        return

            await proc.stdin.send_all(spec.stdin or b"")
            await until_result()  # the session's first turn pays process start
            idle_rss = tree_rss_mib(proc.pid)
            p_start, p_turn, p_rss = [], [], []
            for i in range(turns * 2):
                api.script(Hang(then=Text("ok")))
                t0 = time.perf_counter()
                await proc.stdin.send_all(rt.turn_message(turn(200 + i)))
                await first_request(len(api.requests) + 1)
                p_start.append((time.perf_counter() - t0) * 1000)
                p_rss.append(tree_rss_mib(proc.pid))
                api.release()
                await until_result()
                p_turn.append((time.perf_counter() - t0) * 1000)
                api.hold()
            await proc.stdin.aclose()
            await proc.wait()
            nursery.cancel_scope.cancel()

    persistent = (statistics.median(p_start), statistics.median(p_turn), statistics.median(p_rss))
    print(f"{'mode':12s} {'start->request ms':>18s} {'turn ms':>9s} {'RSS MiB':>9s}")
    for label, (s, t, m) in (("per-turn", per_turn), ("persistent", persistent)):
        print(f"{label:12s} {s:18.1f} {t:9.1f} {m:9.1f}")
    print(f"persistent idle between turns: {idle_rss:.1f} MiB (claude + hive-mcp)")
    print(f"start->request per-turn / persistent: {per_turn[0] / persistent[0]:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    trio.run(main, parser.parse_args().turns)
