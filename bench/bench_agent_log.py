"""What an agent's log costs the trio thread, per stderr line, and what a viewer's page costs.

    .venv/bin/python bench/bench_agent_log.py [--lines 100000]

Feeds the same stderr (100-byte lines) through hive.io.streams.log_stderr three ways, in
the same run: drained only (the line reader alone: the floor), into agent.log, and into a
journald-style datagram socket (the native protocol, a thread reading the other end as
journald would). Prints lines/s and each sink's cost per line over the floor. Then the
reader (hive.logtail): a 5,000-line page from agent.log, and following it 1,000 lines at a
time.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trio.testing

from bench.common import median, ratio
from hive import agentlog, logtail
from hive.io import streams

LINE = b"e" * 99 + b"\n"
CHUNK = 64 << 10


async def feed(log_path: Path | None, total: int) -> float:
    """Seconds for ``total`` lines through log_stderr (None: the line reader alone)."""
    send, receive = trio.testing.memory_stream_pair()
    data = LINE * (CHUNK // len(LINE))

    async def write() -> None:
        for _ in range(total // (CHUNK // len(LINE))):
            await send.send_all(data)
        await send.aclose()

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        if log_path is None:
            async for _ in streams.lines(receive, streams.STDERR_LINE_BYTES):
                pass
        else:
            await streams.log_stderr(receive, deque(maxlen=40), log_path, lambda: 1)
    return time.perf_counter() - t0


# The journald stand-in: another process, as journald is, counting what it receives until
# it is sent END.
DRAIN = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(sys.argv[1])
print("ready", flush=True)
n = 0
while s.recv(1 << 16) != b"END":
    n += 1
print(n, flush=True)
"""


def sinks(root: Path, total: int) -> dict[str, float]:
    """Seconds per sink, the best of three runs each (interleaved)."""
    log_path = root / "bob" / "agent.log"
    log_path.parent.mkdir()
    journal_path = root / "journal.socket"
    drain = subprocess.Popen([sys.executable, "-c", DRAIN, str(journal_path)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert drain.stdout is not None and drain.stdout.readline() == "ready\n"
    times: dict[str, list[float]] = {"drained only": [], "agent.log": [], "journald socket": []}
    fell_back = 0  # lines the journald sink kept in agent.log (its queue stayed full)
    try:
        for _ in range(3):
            times["drained only"].append(trio.run(feed, None, total))
            agentlog.choose(False)
            log_path.unlink(missing_ok=True)
            times["agent.log"].append(trio.run(feed, log_path, total))
            log_path.unlink()
            agentlog.choose(True, journal_path)
            times["journald socket"].append(trio.run(feed, log_path, total))
            agentlog.choose(False)
            fell_back += len(log_path.read_bytes().splitlines()) if log_path.exists() else 0
    finally:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as end:
            end.sendto(b"END", str(journal_path))
        received = drain.stdout.readline().strip()
        drain.wait(timeout=30)
    print(f"  journald stand-in received {received} entries; {fell_back} fell back to agent.log")
    return {name: min(values) for name, values in times.items()}


def reader(root: Path) -> None:
    log = root / "page" / "agent.log"
    log.parent.mkdir()
    log.write_bytes(b"".join(b"2026-12-01T17:00:00 turn=1 %s\n" % LINE[:-1] for _ in range(20000)))
    pages = []
    for _ in range(20):
        t0 = time.perf_counter()
        page = trio.run(logtail.read, "bob", log, 5000)
        pages.append((time.perf_counter() - t0) * 1000)
    assert len(page["lines"]) == 5000
    follows, cursor = [], "file:0:0"
    cursor = f"file:{log.stat().st_ino}:0"
    while True:
        t0 = time.perf_counter()
        step = trio.run(logtail.read, "bob", log, 1000, cursor)
        follows.append((time.perf_counter() - t0) * 1000)
        cursor = step["cursor"]
        if not step["more"]:
            break
    print(f"  a 5,000-line page of agent.log: median {median(pages):.2f} ms")
    print(f"  following it 1,000 lines a page: median {median(follows):.2f} ms a page")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        best = sinks(root, args.lines)
        floor = best["drained only"]
        print(f"stderr of {args.lines} lines of {len(LINE)} bytes through log_stderr:")
        for name, seconds in best.items():
            extra = (seconds - floor) / args.lines * 1e6
            print(f"  {name:16} {args.lines / seconds:10,.0f} lines/s  {ratio(seconds, floor)} "
                  f"of the floor, +{extra:.2f} us a line")  # fmt: skip
        reader(root)


if __name__ == "__main__":
    main()
