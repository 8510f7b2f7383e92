"""hive-mcp against a bare stdio MCP server: start-up time and tool call round trip.

    .venv/bin/python bench/bench_mcp.py [--starts 10] [--calls 500]

Both servers run as real subprocesses driven by the mcp SDK's Client over stdio. The bare
server (tests/echo_mcp_server.py) is the floor: the SDK, one trivial tool, nothing else.
hive-mcp additionally connects to an agent socket (a real unix socket served by
tests/agent_socket_stub.py), asks whoami, and forwards each call as one msgpack frame.
Ratios are printed against that floor and against STACK.md's 1.2-1.5 ms per MCP call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS.parent))

from tests.agent_socket_stub import AgentSocketStub  # noqa: E402

STACK_CALL_MS = (1.2, 1.5)  # MCP tool call over stdio, STACK.md


def bare() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(TESTS / "echo_mcp_server.py")])


def hive(socket: Path, *, gc_trick: bool = True) -> StdioServerParameters:
    env = {"HIVE_SOCKET": str(socket)}
    if gc_trick:
        return StdioServerParameters(
            command=sys.executable, args=["-m", "hive.mcp_server"], env=env
        )
    # The same server with the collector left on while the SDK is imported.
    code = "import gc; gc.disable = lambda: None; from hive.mcp_server import main; main()"
    return StdioServerParameters(command=sys.executable, args=["-c", code], env=env)


async def start_ms(params: StdioServerParameters) -> float:
    """Spawn -> handshake done -> tools listed (what claude waits for before its first call)."""
    t0 = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        return (time.perf_counter() - t0) * 1000


async def call_ms(
    params: StdioServerParameters, tool: str, args: dict[str, str], n: int
) -> list[float]:
    async with Client(params) as client:
        for _ in range(20):  # warm up
            await client.call_tool(tool, args)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool(tool, args)
            out.append((time.perf_counter() - t0) * 1000)
            assert not result.is_error, result
        return out


async def python_floor_ms(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await trio.run_process([sys.executable, "-c", code])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def p(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


async def main(starts: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stub = AgentSocketStub(Path(tmp) / "agent.sock")
        async with trio.open_nursery() as nursery:
            await nursery.start(stub.serve)

            async def median_start(make: Callable[[], StdioServerParameters]) -> float:
                return statistics.median([await start_ms(make()) for _ in range(starts)])

            runs: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                ("python -c pass", lambda: python_floor_ms("pass", starts)),
                (
                    "python: import trio + mcp server SDK",
                    lambda: python_floor_ms("import trio, mcp.server.mcpserver", starts),
                ),
                ("bare MCP server start", lambda: median_start(bare)),
                (
                    "hive-mcp start, gc on during imports",
                    lambda: median_start(lambda: hive(stub.path, gc_trick=False)),
                ),
                ("hive-mcp start", lambda: median_start(lambda: hive(stub.path))),
            ]
            figures: dict[str, float] = {}
            print(f"start-up, median of {starts} (ms)")
            for label, run in runs:
                figures[label] = await run()
                print(f"  {label:42s} {figures[label]:8.1f}")
            ratio = figures["hive-mcp start"] / figures["bare MCP server start"]
            cut = figures["hive-mcp start, gc on during imports"] / figures["hive-mcp start"]
            print(f"  hive-mcp / bare server start              {ratio:8.2f}x")
            print(f"  gc trick: gc-on / gc-off                 {cut:8.2f}x")

            print(f"\ntool call round trip, {calls} calls (ms): median / p99")
            bare_calls = await call_ms(bare(), "echo", {"text": "x"}, calls)
            hive_calls = await call_ms(hive(stub.path), "set_status", {"text": "x"}, calls)
            for label, xs in (
                ("bare server echo", bare_calls),
                ("hive-mcp set_status (via agent socket)", hive_calls),
            ):
                print(f"  {label:42s} {statistics.median(xs):8.3f} / {p(xs, 0.99):.3f}")
            hive_median = statistics.median(hive_calls)
            print(
                f"  hive-mcp / bare server call              "
                f"{hive_median / statistics.median(bare_calls):8.2f}x"
            )
            lo, hi = STACK_CALL_MS
            print(
                f"  hive-mcp / STACK.md {lo}-{hi} ms             "
                f"{hive_median / hi:.2f}-{hive_median / lo:.2f}x  (goal: <= 2x)"
            )
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--calls", type=int, default=500)
    ns = parser.parse_args()
    trio.run(main, ns.starts, ns.calls)
