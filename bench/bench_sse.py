"""Dashboard SSE fan-out: event latency from a state change to 100 connected dashboards.

A real supervisor serves its dashboard; N clients hold ``/api/stream?kinds=agent`` open.
An agent ("pulse", with no mail, so it never takes a turn) sets its status through its own socket
at a fixed rate; each change reaches every client as an 'agent' row. Latency is the
client's receive time minus the row's ``status_set_at`` (when the Agent actor changed the
state), so it covers actor -> store commit -> hub -> trio hop -> SSE -> client.

Phase 1: a quiet hive. Phase 2: the same while 50 scripted agents are busy taking turns
(each turn is a real subprocess), with the supervisor's own CPU measured meanwhile.

    python bench/bench_sse.py [--clients 100] [--rate 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from bench.common import RunningHive, median, percentile, ratio
from bench.limits import socket_limits
from hive.client import HiveError, SyncClient

BUSY_AGENTS = 50


def config(busy: int) -> str:
    workers = "\n".join(
        f"""[[agent]]
name = "w{i}"
parent = "manager"
rate_limit_per_minute = 100000
[[agent.script]]
match = "*"
do = [{{op = "set_status", text = "working {{count}}"}}, {{op = "sleep", seconds = 0.3}},
      {{op = "reply", body = "done {{body}}"}}]
"""
        for i in range(busy)
    )
    return f"""
[hive]
sqlite_synchronous = "FULL"

[[agent]]
name = "manager"

[[agent]]
name = "pulse"
rate_limit_per_minute = 100000

{workers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def client(port: int, token: str, chunks: list[tuple[float, bytes]], ready: Any) -> None:
    """A lean SSE reader: stamps each chunk on arrival, parses after the run."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        (
            "GET /api/stream?kinds=agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    first = True
    async with stream:
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                return
            chunks.append((time.time(), data))
            if first:
                first = False
                ready()


def latencies(chunks: list[tuple[float, bytes]], since: float) -> list[float]:
    out = []
    for received, data in chunks:
        for line in data.split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                item = json.loads(line[6:])
            except ValueError:
                continue  # an event split across chunks (the snapshot): not a pulse
            row = item.get("data") or {}
            if item.get("kind") != "agent" or row.get("name") != "pulse":
                continue
            set_at = row.get("status_set_at")
            if set_at and set_at >= since and row.get("status_text", "").startswith("pulse "):
                out.append((received - set_at) * 1000)
    return out


def pulse(hive: RunningHive, rate: float, seconds: float) -> int:
    """Set pulse's status ``rate`` times a second, paced, for ``seconds``."""
    sent = 0
    with SyncClient(hive.agent_socket("pulse"), timeout=30) as c:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            c.call("set_status", text=f"pulse {sent}")
            sent += 1
            time.sleep(max(0.0, sent / rate - (time.monotonic() - start)))
    return sent


def keep_busy(hive: RunningHive, busy: int, seconds: float, period: float, stop: Any) -> int:
    """Send each worker a message every ``period`` seconds, staggered."""
    sent = 0
    with SyncClient(hive.admin_path, timeout=30) as admin:
        start = time.monotonic()
        while time.monotonic() - start < seconds and not stop():
            for i in range(busy):
                admin.call("send", to=f"w{i}", body=f"job {sent}")
                sent += 1
                time.sleep(period / busy)
    return sent


class AdminWatcher:
    """The baseline: the same updates pushed over the admin socket (hivectl subscribe)."""

    def __init__(self, hive: RunningHive) -> None:
        self.client = SyncClient(hive.admin_path, timeout=None)
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            for frame in self.client.stream("subscribe", kinds=["agent"]):
                self.samples.append((time.time(), frame))
        except (HiveError, OSError):
            pass

    def stop(self, since: float) -> list[float]:
        self.client.close()
        self.thread.join(timeout=5)
        out = []
        for received, frame in self.samples:
            row = (frame.get("data") or {}).get("data") or {}
            set_at = row.get("status_set_at")
            if row.get("name") == "pulse" and set_at and set_at >= since:
                out.append((received - set_at) * 1000)
        return out


async def measure(
    hive: RunningHive, port: int, clients: int, rate: float, seconds: float, busy: int
) -> dict[str, Any]:
    token = (hive.state_dir / "operator-token").read_text().strip()
    streams: list[list[tuple[float, bytes]]] = [[] for _ in range(clients)]
    proc = psutil.Process(hive.process.pid)
    admin = AdminWatcher(hive)
    async with trio.open_nursery() as nursery:
        connected = trio.Semaphore(0)
        for chunks in streams:
            nursery.start_soon(client, port, token, chunks, connected.release)
        for _ in range(clients):
            await connected.acquire()
        await trio.sleep(0.5)
        since = time.time()
        cpu_before = proc.cpu_times()
        wall = time.monotonic()
        done = False
        busy_sent = 0

        async def load() -> None:
            nonlocal busy_sent
            busy_sent = await trio.to_thread.run_sync(
                keep_busy, hive, busy, seconds, 5.0, lambda: done
            )

        if busy:
            nursery.start_soon(load)
            await trio.sleep(3)  # let the turns get going before measuring
            since = time.time()
            cpu_before = proc.cpu_times()
            wall = time.monotonic()
        sent = await trio.to_thread.run_sync(pulse, hive, rate, seconds - (3 if busy else 0))
        cpu_after = proc.cpu_times()
        wall = time.monotonic() - wall
        done = True
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    samples = [lat for chunks in streams for lat in latencies(chunks, since)]
    baseline = admin.stop(since)
    cpu = (cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system) / wall
    return {
        "clients": clients,
        "sent": sent,
        "samples": len(samples),
        "expected": sent * clients,
        "p50": median(samples),
        "p99": percentile(samples, 99),
        "max": max(samples) if samples else float("nan"),
        "cpu": cpu,
        "admin_p50": median(baseline),
        "admin_p99": percentile(baseline, 99),
        "busy_messages": busy_sent,
    }


def report(label: str, r: dict[str, Any], limit: float) -> None:
    print(
        f"{label:34s} {r['clients']:4d} clients  {r['samples']:6d}/{r['expected']:<6d} events  "
        f"p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  max {r['max']:7.1f} ms  "
        f"supervisor CPU {r['cpu'] * 100:5.1f}%"
    )
    print(
        f"{'':34s} same updates over the admin socket (1 subscriber): p50 {r['admin_p50']:.2f} "
        f"ms, p99 {r['admin_p99']:.2f} ms; SSE p50 = {ratio(r['p50'], r['admin_p50'])} of "
        f"that, {ratio(r['p50'], limit)} a bare unix-socket round trip ({limit:.3f} ms)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0, help="state changes per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--busy", type=int, default=BUSY_AGENTS)
    args = p.parse_args()
    floor = socket_limits().median_ms
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        hive = RunningHive.start(Path(tmp) / "hive", config(args.busy), dashboard_port=port)
        try:
            hive.wait_until(
                lambda: (hive.state_dir / "operator-token").exists(), what="the dashboard"
            )
            time.sleep(1.0)
            print(f"SSE fan-out, {args.rate:g} state changes/s for {args.seconds:g} s")
            one = trio.run(measure, hive, port, 1, args.rate, args.seconds, 0)
            report("quiet hive", one, floor)
            twenty = trio.run(measure, hive, port, 20, args.rate, args.seconds, 0)
            report("quiet hive", twenty, floor)
            many = trio.run(measure, hive, port, args.clients, args.rate, args.seconds, 0)
            report("quiet hive", many, floor)
            loaded = trio.run(
                measure, hive, port, args.clients, args.rate, args.seconds * 2, args.busy
            )
            report(f"{args.busy} agents busy", loaded, floor)
            mail = hive.admin("messages", agent="operator", limit=1000)["messages"]
            replies = [m for m in mail if m["to"] == "operator"]
            print(
                f"  ({loaded['busy_messages']} jobs sent to {args.busy} agents, each a turn in "
                f"its own process; {len(replies)} replies reached the operator)"
            )
        finally:
            hive.terminate()


if __name__ == "__main__":
    main()
