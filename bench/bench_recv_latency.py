"""Latency from send to a waiting recv, at a steady offered rate.

One connection acts as agent `src` and sends to `dst` at --rate msg/s; another acts as
`dst` and keeps a long-poll recv waiting. Latency is the time from the send leaving the
client to the message arriving in the recv reply (one clock, one process).

Beside it, the same seconds, a bare process (``bench.stall_probe``) records how late it
wakes from 1 ms sleeps and how long its own 1-row FULL commits take: on a shared machine a
tail can be the host's (a core busy elsewhere, a disk behind other writers), and the limits
measured before the run cannot show that.

Goal (issue 2): p99 <= 2 ms at 500 msg/s.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import tempfile
import time
from pathlib import Path

import trio

from bench import hop_report
from bench.common import RunningHive, median, percentile, ratio
from bench.limits import socket_limits, sqlite_limits
from bench.stall_probe import StallProbe
from hive.client import TrioClient

GOAL_P99_MS = 2.0

CONFIG = """
[hive]
sqlite_synchronous = "{sync}"

[[agent]]
name = "src"
rate_limit_per_minute = 10000000

[[agent]]
name = "dst"
"""


# Per message id: the client's send and receive times (perf_counter), for --trace.
Times = dict[int, tuple[float, float]]


async def measure(
    hive: RunningHive, rate: float, count: int, ack_mode: str
) -> tuple[list[float], Times]:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    times: Times = {}

    async def receiver(client: TrioClient, done: trio.Event) -> None:
        while len(latencies) < count:
            got = await client.request("recv", wait_seconds=30)
            now = time.perf_counter()
            for m in got["messages"]:
                latencies.append((now - sent_at[m["body"]]) * 1000)
                times[m["id"]] = (sent_at[m["body"]], now)
            # The receiver has them at the reply; the ack (which commits the delivered
            # mark outside a turn) follows on the same connection. "wait": the next recv
            # only once the ack's commit is confirmed, so a message that arrives in that
            # window finds no recv parked (it waits in the Agent, not the recv lane);
            # "pipelined": the next recv goes out without waiting for the ack's reply.
            if ack_mode == "pipelined":
                acks.start_soon(client.ack, got)
            else:
                await client.ack(got)
        done.set()

    async with (
        TrioClient.connect(hive.agent_socket("src")) as src,
        TrioClient.connect(hive.agent_socket("dst")) as dst,
    ):
        done = trio.Event()
        async with trio.open_nursery() as nursery, trio.open_nursery() as acks:
            nursery.start_soon(receiver, dst, done)
            interval = 1 / rate
            start = trio.current_time()
            for i in range(count):
                await trio.sleep_until(start + i * interval)
                body = f"m{i}"
                sent_at[body] = time.perf_counter()
                nursery.start_soon(lambda b=body: src.call("send", to="dst", body=b))
            await done.wait()
    return latencies, times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--sync", default="FULL", help="sqlite synchronous: FULL or NORMAL")
    p.add_argument(
        "--ack",
        choices=("wait", "pipelined"),
        default="wait",
        help="the reader waits for its ack's reply before its next recv, or not",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="stamp every hop in the supervisor (hive.hoptrace) and report where time went",
    )
    args = p.parse_args()
    sock, sql = socket_limits(), sqlite_limits()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "hops.json"
        env = {"HIVE_HOP_TRACE": str(trace)} if args.trace else {}
        hive = RunningHive.start(Path(tmp), CONFIG.format(sync=args.sync), env)
        try:
            # dst's own turn loop would race the recv for its mail: pause it.
            hive.admin("pause", names=["dst"])
            probe = StallProbe.start(args.seconds)  # the host's stalls, these same seconds
            # The client is the measuring instrument: a collection of its own (one gen1
            # took 44 ms in a traced run, while it held send timestamps) is no latency of
            # the hive's. Its few MB of garbage wait until the run is over.
            gc.collect()
            gc.disable()
            try:
                lat, times = trio.run(
                    measure, hive, args.rate, int(args.rate * args.seconds), args.ack
                )
            finally:
                gc.enable()
            stalls = probe.result()
        finally:
            hive.terminate()  # the supervisor writes its hop stamps as it exits
        hops = hop_report.report(trace, times) if args.trace else []
        store = [ln for ln in hive.log_path.read_text().splitlines() if "store: " in ln]
    p50, p99 = median(lat), percentile(lat, 99)
    print(
        f"send -> waiting recv at {args.rate:g} msg/s, {len(lat)} messages "
        f"(synchronous={args.sync}, ack={args.ack}), load average {load:.2f} at the start"
    )
    print(f"  p50 {p50:.3f} ms   p99 {p99:.3f} ms   max {max(lat):.3f} ms")
    print(f"  p99 vs goal ({GOAL_P99_MS} ms): {ratio(p99, GOAL_P99_MS)}")
    print(f"  {sock.line()}")
    print(f"  {sql.line()}")
    print(f"  {stalls.line()}")
    # The floor under one message: its commit (one FULL fsync, shared by what arrived
    # meanwhile) and two socket round trips (the send and the recv's reply).
    commit_ms = 1000 / sql.single_commits_per_s
    floor_p50 = commit_ms + 2 * sock.median_ms
    print(f"  p50 vs one 1-row commit + 2 bare round trips ({floor_p50:.3f} ms): "
          f"{ratio(p50, floor_p50)}")  # fmt: skip
    print(f"  p99 vs bare round-trip p99 ({sock.p99_ms:.3f} ms): {ratio(p99, sock.p99_ms)}")
    # The tail's floor: a message waits for its commit, and a commit's p99 on a shared disk
    # alone may exceed the goal.
    floor_p99 = sql.commit_p99_ms + 2 * sock.p99_ms
    print(f"  p99 vs one commit's p99 + 2 bare round-trip p99s ({floor_p99:.3f} ms): "
          f"{ratio(p99, floor_p99)}")  # fmt: skip
    # The same floor as the host gave it during the run: a commit beside it, same seconds.
    print(f"  p99 vs the bare process's commit p99, same seconds ({stalls.commit_p99_ms:.3f} ms): "
          f"{ratio(p99, stalls.commit_p99_ms)}")  # fmt: skip
    # The Store's own count (a supervisor that reports it): transactions per message.
    fsyncs = [re.search(r"\((\d+) changed rows\)", ln) for ln in store]
    if fsyncs and fsyncs[-1]:
        n = int(fsyncs[-1].group(1))
        print(f"  the Store's transactions that changed rows (an fsync each): {n}, "
              f"{n / max(1, len(lat)):.2f} per message")  # fmt: skip
    for line in hops:
        print(line)


if __name__ == "__main__":
    main()
