"""The hive's MCP path (relay -> agent socket -> the supervisor's MCP server) against a bare
stdio MCP server: relay start, relay memory, tool call round trip, in one run.

    .venv/bin/python -m bench.bench_mcp [--starts 20] [--calls 500]

A real hive-supervisor runs (its agents paused). The bare server (tests/echo_mcp_server.py:
the SDK, one trivial tool, nothing else) is what every agent ran before: the floor a stdio
MCP server costs. The alternatives to the Python relay are measured beside it: the same
relay in C (bench/relay.c, compiled here), and the starts of a bare interpreter and of a
native program (/bin/true), the floors each kind of relay stands on. Goals (issue 12):
relay start <= 30 ms, relay RSS <= 15 MiB, a tool call <= 1.5x the bare server's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from bench.common import ROOT, RunningHive, percentile
from hive.client import SyncClient
from tests.mcp_lines import RelayClient, relay_argv

ECHO = ROOT / "tests" / "echo_mcp_server.py"
START_GOAL_MS = 30.0
RSS_GOAL_MIB = 15.0
CALL_GOAL = 1.5
CONFIG = '[[agent]]\nname = "alice"\n'


def compile_c_relay(tmp: Path) -> list[str] | None:
    out = tmp / "relay-c"
    try:
        subprocess.run(
            ["cc", "-O2", "-D_GNU_SOURCE", "-o", str(out), str(ROOT / "bench" / "relay.c")],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  (no C relay: {exc})")
        return None
    return [str(out)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready_ms(argv: list[str], socket: Path | None) -> tuple[float, float]:
    """Spawn -> initialize answered -> tools listed (what claude waits for before its first
    call), in ms; and the process's RSS at that point, in MiB."""
    t0 = time.perf_counter()
    with RelayClient(socket, argv=argv) as mcp:
        mcp.initialize()
        assert "result" in mcp.request("tools/list")
        elapsed = (time.perf_counter() - t0) * 1000
        return elapsed, rss_mib(mcp.proc.pid)


def spawn_ms(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    return (time.perf_counter() - t0) * 1000


def handshake_ms(socket: Path, n: int) -> float:
    """initialize + tools/list on a running relay: the supervisor's share of a start."""
    with RelayClient(socket) as mcp:
        mcp.initialize()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            mcp.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "b", "version": "1"}})  # fmt: skip
            mcp.request("tools/list")
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)


async def call_ms(
    params: StdioServerParameters, tool: str, args: dict[str, object], n: int
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


def op_ms(socket: Path, op: str, args: dict[str, object], n: int) -> list[float]:
    """The same op as one msgpack frame on the agent socket: what the tool forwards to."""
    with SyncClient(socket) as client:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.call(op, **args)
            out.append((time.perf_counter() - t0) * 1000)
        return out


def starts_table(socket: Path, c_relay: list[str] | None, starts: int) -> dict[str, float]:
    bare = [sys.executable, str(ECHO)]
    rows: list[tuple[str, Callable[[], tuple[float, float]]]] = [
        ("python -I -S -c pass", lambda: (spawn_ms([sys.executable, "-I", "-S", "-c", "pass"]), 0)),
        ("/bin/true (a native program)", lambda: (spawn_ms(["/bin/true"]), 0)),
        ("bare SDK server: spawn -> tools listed", lambda: ready_ms(bare, None)),
        ("python relay: spawn -> tools listed", lambda: ready_ms(relay_argv(), socket)),
    ]
    if c_relay:
        rows.append(("C relay: spawn -> tools listed", lambda: ready_ms(c_relay, socket)))
    figures: dict[str, float] = {}
    print(f"start, median of {starts} (ms), and RSS once ready (MiB)")
    for label, run in rows:
        results = [run() for _ in range(starts)]
        figures[label] = statistics.median(r[0] for r in results)
        figures[label + " rss"] = statistics.median(r[1] for r in results)
        rss = f"{figures[label + ' rss']:6.1f}" if figures[label + " rss"] else ""
        print(f"  {label:44s} {figures[label]:8.1f}  {rss}")
    return figures


def print_start_ratios(figures: dict[str, float], handshake: float) -> None:
    relay = figures["python relay: spawn -> tools listed"]
    bare = figures["bare SDK server: spawn -> tools listed"]
    own = relay - handshake
    print(f"  supervisor's initialize + tools/list on a running relay {handshake:8.1f}")
    print(f"  python relay's own start (the difference)    {own:8.1f}"
          f"  {own / START_GOAL_MS:.2f}x the {START_GOAL_MS:g} ms goal")  # fmt: skip
    rss = figures["python relay: spawn -> tools listed rss"]
    print(f"  python relay RSS                             {rss:8.1f}"
          f"  {rss / RSS_GOAL_MIB:.2f}x the {RSS_GOAL_MIB:g} MiB goal")  # fmt: skip
    print(f"  python relay ready / bare SDK server ready   {relay / bare:8.2f}x")
    c = figures.get("C relay: spawn -> tools listed")
    if c:
        print(f"  python relay ready / C relay ready           {relay / c:8.2f}x")


async def calls_table(socket: Path, c_relay: list[str] | None, calls: int) -> None:
    env = {"HIVE_SOCKET": str(socket)}
    argv = relay_argv()
    bare = StdioServerParameters(command=sys.executable, args=[str(ECHO)])
    relay = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    recv: dict[str, object] = {"wait_seconds": 0}
    status: dict[str, object] = {"text": "x"}
    runs = [
        ("bare SDK server: echo", bare, "echo", {"text": "x"}),
        ("python relay: recv(0) (an actor hop)", relay, "recv", recv),
        ("python relay: set_status (a store write)", relay, "set_status", status),
    ]
    if c_relay:
        c = StdioServerParameters(command=c_relay[0], env=env)
        runs.append(("C relay: recv(0)", c, "recv", recv))
    print(f"\ntool call round trip, {calls} calls, SDK client over stdio (ms): median / p99")
    medians: dict[str, float] = {}
    for label, params, tool, args in runs:
        xs = await call_ms(params, tool, args, calls)
        medians[label] = statistics.median(xs)
        print(f"  {label:44s} {medians[label]:8.3f} / {percentile(xs, 99):.3f}")
    for label, op, args in (("recv(0)", "recv", recv), ("set_status", "set_status", status)):
        xs = op_ms(socket, op, args, calls)
        medians[f"op {label}"] = statistics.median(xs)
        print(f"  {'the op alone, one frame: ' + label:44s} {medians[f'op {label}']:8.3f}"
              f" / {percentile(xs, 99):.3f}")  # fmt: skip
    print_call_ratios(medians)


def print_call_ratios(medians: dict[str, float]) -> None:
    bare = medians["bare SDK server: echo"]
    recv = medians["python relay: recv(0) (an actor hop)"]
    status = medians["python relay: set_status (a store write)"]
    layer = recv - medians["op recv(0)"]  # relay + MCP session + in-process call
    print(f"  python relay recv(0) / bare server call      {recv / bare:8.2f}x"
          f"  ({recv / bare / CALL_GOAL:.2f}x the {CALL_GOAL:g}x goal)")  # fmt: skip
    print(f"  python relay set_status / bare server call   {status / bare:8.2f}x")
    print(f"  MCP layer (recv(0) call - the op alone)      {layer:8.3f} ms"
          f"  {layer / bare:.2f}x a bare server's whole call")  # fmt: skip
    c = medians.get("C relay: recv(0)")
    if c:
        print(f"  python relay / C relay, recv(0)              {recv / c:8.2f}x")


def main(starts: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hive = RunningHive.start(Path(tmp) / "hive", CONFIG)
        try:
            hive.admin("pause", names=["alice"])
            socket = hive.agent_socket("alice")
            c_relay = compile_c_relay(Path(tmp))
            before = rss_mib(hive.process.pid)
            first, _ = ready_ms(relay_argv(), socket)  # loads the SDK in the supervisor
            after = rss_mib(hive.process.pid)
            print(
                f"first session (the supervisor imports the MCP SDK): {first:.0f} ms; "
                f"supervisor RSS {before:.0f} -> {after:.0f} MiB (once per daemon)\n"
            )
            figures = starts_table(socket, c_relay, starts)
            print_start_ratios(figures, handshake_ms(socket, starts))
            trio.run(calls_table, socket, c_relay, calls)
        finally:
            hive.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500)
    ns = parser.parse_args()
    main(ns.starts, ns.calls)
