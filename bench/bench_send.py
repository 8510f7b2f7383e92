"""Durable send throughput through the real socket path.

Senders are agents talking to their own sockets; each message is acknowledged only after
the Store has committed it (WAL, synchronous=FULL). The recipient is paused so no turn
runs: this measures socket -> Bus -> Store (group commit) -> ack.

Goal (issue 2): >= 20,000 msg/s acknowledged-and-committed on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from bench.common import RunningHive, pipeline, ratio
from bench.limits import SqliteLimits, sqlite_limits
from hive.wire import encode_frame, request

GOAL = 20_000
# 500 agents each keeping one send in flight: how real agents send (one tool call at a time).
FLEET_SENDERS = 500
FLEET_PER_SENDER = 40


def config(senders: int) -> str:
    agents = "\n".join(
        f'[[agent]]\nname = "s{i}"\nrate_limit_per_minute = 100000000\n' for i in range(senders)
    )
    return f"""
[hive]
sqlite_synchronous = "FULL"

[[agent]]
name = "sink"
inbox_cap = 100000000

{agents}
"""


async def sender(path: Path, count: int, window: int, done: list[int]) -> None:
    """Keeps ``window`` sends in flight on one agent socket; counts the acks."""
    frames = [
        encode_frame(request(i + 1, "send", to="sink", body=f"message {i} " + "x" * 200))
        for i in range(count)
    ]
    replies = await pipeline(path, frames, window)
    done.extend([1] * len(replies))


async def run(hive: RunningHive, senders: int, per_sender: int, window: int) -> float:
    done: list[int] = []
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(senders):
            nursery.start_soon(sender, hive.agent_socket(f"s{i}"), per_sender, window, done)
    elapsed = time.perf_counter() - start
    assert len(done) == senders * per_sender
    return len(done) / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total", type=int, default=40_000, help="messages per configuration")
    p.add_argument("--window", type=int, default=64, help="requests in flight per sender")
    p.add_argument("--fleet", type=int, default=FLEET_SENDERS, help="senders, window 1")
    p.add_argument("--fleet-count", type=int, default=FLEET_PER_SENDER, help="sends each")
    p.add_argument("--only-fleet", action="store_true")
    args = p.parse_args()
    limits = sqlite_limits()
    print(limits.line())
    print("durable send throughput (msg/s acknowledged after commit)")
    print(
        f"{'senders':>8} {'window':>7} {'msg/s':>10} {'vs goal':>8} "
        f"{'vs 1-row commits':>17} {'vs batched rows':>16}"
    )
    plans = [(s, (1, args.window)) for s in (1, 10, 50)] + [(args.fleet, (1,))]
    if args.only_fleet:
        plans = plans[-1:]
    for senders, windows in plans:
        with tempfile.TemporaryDirectory() as tmp:
            hive = RunningHive.start(Path(tmp), config(senders))
            try:
                hive.admin("pause", names=["sink"])
                per_sender = max(1, args.total // senders)
                for window in windows:
                    # Unpipelined sends are slow (one fsync each): a smaller sample.
                    count = min(per_sender, 5000) if window == 1 else per_sender
                    if senders == args.fleet:
                        count = args.fleet_count
                    rate = trio.run(run, hive, senders, count, window)
                    print(_row(senders, window, rate, limits))
                with hive.db() as db:
                    stored = db.execute("SELECT COUNT(*) FROM messages").fetchall()[0][0]
                print(f"{'':>8} (stored and committed: {stored:,} messages)")
            finally:
                hive.terminate()


def _row(senders: int, window: int, rate: float, limits: SqliteLimits) -> str:
    return (
        f"{senders:>8} {window:>7} {rate:>10,.0f} {ratio(rate, GOAL):>8} "
        f"{ratio(rate, limits.single_commits_per_s):>17} "
        f"{ratio(rate, limits.batched_rows_per_s):>16}"
    )


if __name__ == "__main__":
    main()
