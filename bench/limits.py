"""The host's own limits, measured in the same run as the benchmark that compares with them.

A figure like "55,000 msg/s" says little without what the same machine does bare, at the
same moment: SQLite's FULL commits (one row per commit, and 100 rows per commit), a unix
socket round trip with msgpack frames under trio, a bare ``claude -p`` start with no MCP
server at all, 1,000 bare pykka actors. Each benchmark measures the ones it is bound by
and prints its figures as ratios to them (``bench.common.ratio``); a shared machine then
moves both sides together.

    .venv/bin/python -m bench.limits     # all of them, printed
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import apsw
import trio

import bench.common  # noqa: F401  (puts the repository on sys.path)
from hive.wire import FrameDecoder, encode_frame

ROWS_PER_BATCH = 100
COMMIT_SAMPLES = 1000


@dataclass(frozen=True)
class SqliteLimits:
    single_commits_per_s: float  # WAL, synchronous=FULL, one row per transaction
    batched_rows_per_s: float  # the same, ROWS_PER_BATCH rows per transaction
    # One 1-row commit's time, median and p99 (COMMIT_SAMPLES timed one by one): the floor
    # under any latency that waits for a commit, tail included.
    commit_p50_ms: float = 0.0
    commit_p99_ms: float = 0.0

    def line(self) -> str:
        return (
            f"SQLite WAL FULL here, now: {self.single_commits_per_s:,.0f} 1-row commits/s, "
            f"{self.batched_rows_per_s:,.0f} rows/s in {ROWS_PER_BATCH}-row commits; "
            f"one commit p50 {self.commit_p50_ms:.3f} ms, p99 {self.commit_p99_ms:.3f} ms"
        )


def sqlite_limits(seconds: float = 1.0) -> SqliteLimits:
    """SQLite's FULL commit rates on this disk, now (a table like the messages table)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = apsw.Connection(str(Path(tmp) / "limit.db"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, sender TEXT, body TEXT)")
        body = "x" * 64
        single = _rate(seconds, lambda i: _commit(conn, [(i, "a", body)]))
        batched = ROWS_PER_BATCH * _rate(
            seconds,
            lambda i: _commit(
                conn,
                [(10_000_000 + i * ROWS_PER_BATCH + k, "a", body) for k in range(ROWS_PER_BATCH)],
            ),
        )
        times = []
        for i in range(COMMIT_SAMPLES):
            t0 = time.perf_counter()
            _commit(conn, [(20_000_000 + i, "a", body)])
            times.append((time.perf_counter() - t0) * 1000)
        conn.close()
    times.sort()
    p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
    return SqliteLimits(single, batched, p50, p99)


def _commit(conn: apsw.Connection, rows: list[tuple[int, str, str]]) -> None:
    with conn:
        conn.executemany("INSERT INTO m VALUES (?, ?, ?)", rows)


def _rate(seconds: float, step: object) -> float:
    assert callable(step)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds and n < 1_000_000:
        step(n)
        n += 1
    return n / elapsed


@dataclass(frozen=True)
class SocketLimits:
    median_ms: float
    p99_ms: float

    def line(self) -> str:
        return (
            f"bare unix-socket msgpack round trip (trio) here, now: median "
            f"{self.median_ms * 1000:.0f} us, p99 {self.p99_ms * 1000:.0f} us"
        )


def socket_limits(round_trips: int = 3000) -> SocketLimits:
    """A request/response over a unix socket with hive's frames, both ends under trio."""
    return trio.run(_socket_rtts, round_trips)


async def _socket_rtts(round_trips: int) -> SocketLimits:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "echo.sock")
        listener = trio.socket.socket(trio.socket.AF_UNIX)
        await listener.bind(path)
        listener.listen()
        times: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo, trio.SocketListener(listener))
            stream = await trio.open_unix_socket(path)
            decoder = FrameDecoder()
            frame = encode_frame({"op": "recv", "id": 1, "args": {"wait_seconds": 0}})
            for _ in range(round_trips):
                t0 = time.perf_counter()
                await stream.send_all(frame)
                got: list[object] = []
                while not got:
                    got = list(decoder.feed(await stream.receive_some(65536)))
                times.append((time.perf_counter() - t0) * 1000)
            await stream.aclose()
            nursery.cancel_scope.cancel()
    times.sort()
    return SocketLimits(statistics.median(times), times[int(len(times) * 0.99)])


async def _echo(listener: trio.SocketListener) -> None:
    stream = await listener.accept()
    decoder = FrameDecoder()
    reply = encode_frame({"id": 1, "ok": True, "result": {"messages": []}})
    while data := await stream.receive_some(65536):
        for _ in decoder.feed(data):
            await stream.send_all(reply)


class BareClaude:
    """A bare ``claude -p`` with no MCP server: process start -> its model request at the
    fake API, in ms. What every per-turn process pays before hive adds anything. Kept open,
    so that a benchmark can interleave bare starts with what it compares to them: both then
    run under the same load, which moves a CLI start by 2-3x on a shared machine."""

    def __enter__(self) -> BareClaude:
        from tests.claude_cli import claude_bin
        from tests.fake_anthropic import FakeAnthropic, Text

        self._tmp = tempfile.TemporaryDirectory()
        self._api = FakeAnthropic(default=Text("ok")).__enter__()
        tmp = self._tmp.name
        self._env = {
            "PATH": "/usr/bin:/bin",
            "HOME": tmp,
            "CLAUDE_CONFIG_DIR": tmp,
            **self._api.env(),
        }
        self._argv = [claude_bin(), "-p", "--model", "claude-bench", "--output-format",
                      "stream-json", "--verbose", "--strict-mcp-config",
                      "--setting-sources", ""]  # fmt: skip
        self.start_ms()  # the first warms the page cache
        return self

    def __exit__(self, *exc: object) -> None:
        self._api.__exit__(None, None, None)
        self._tmp.cleanup()

    last_cpu_ms = 0.0  # the CPU the last start's claude used until its request

    def start_ms(self) -> float:
        from tests.fake_anthropic import Hang, Text

        api = self._api
        api.script(Hang(then=Text("ok")))
        seen = len(api.requests)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=self._env, cwd=self._tmp.name,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(b"hello")
        proc.stdin.close()
        api.wait_for_requests(seen + 1, timeout=60)
        took = (time.perf_counter() - t0) * 1000
        self.last_cpu_ms = cpu_ms(proc.pid)  # held at the API: it is not working meanwhile
        api.release()
        proc.wait(timeout=60)
        return took


def cpu_ms(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used so far, in ms: a cost that the
    machine's load moves far less than wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def claude_start_ms(runs: int = 3) -> float:
    """A bare ``claude -p`` start (``BareClaude``), median of ``runs`` after a warm-up."""
    with BareClaude() as bare:
        return statistics.median(bare.start_ms() for _ in range(runs))


@dataclass(frozen=True)
class ActorLimits:
    start_ms: float
    rss_mib: float

    def line(self) -> str:
        return (
            f"1,000 bare pykka actors here, now: start {self.start_ms:.0f} ms, "
            f"+{self.rss_mib:.0f} MiB RSS"
        )


def actor_limits(count: int = 1000) -> ActorLimits:
    """Start ``count`` bare pykka actors (256 KiB stacks, as the daemon does) in a child
    process: the floor under 'N idle agents'."""
    out = subprocess.run(
        [sys.executable, "-c", _ACTORS.format(count=count)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    start_ms, rss_mib = (float(x) for x in out.stdout.split())
    return ActorLimits(start_ms, rss_mib)


_ACTORS = """
import threading, time, pykka
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
threading.stack_size(256 * 1024)
class A(pykka.ThreadingActor):
    pass
before = rss()
t0 = time.perf_counter()
refs = [A.start() for _ in range({count})]
took = (time.perf_counter() - t0) * 1000
print(took, rss() - before)
pykka.ActorRegistry.stop_all()
"""


def main() -> None:
    print(sqlite_limits().line())
    print(socket_limits().line())
    print(actor_limits().line())
    print(f"bare claude -p start (no MCP server) -> model request: {claude_start_ms():.0f} ms")


if __name__ == "__main__":
    main()
