"""Federation: cross-hive latency, durable throughput, and an outbox drain after a partition.

Two hives (alpha, beta: separate supervisors and state dirs) on one nats-server with
JetStream, all on loopback, all started by this script.

- latency: alpha's `src` sends to `dst@beta`, which waits in a recv; closed loop (the next
  send once the last arrived). Against local delivery (`src` -> `loc` on alpha) and a
  bare nats-py request/reply on the same server, measured in the same run. Also against
  the durable floor: the same durable steps done bare (SQLite commit, JetStream file-stored
  publish, SQLite commit), which the bare round trip (no disk) does not pay.
  Goal (issue 13): p99 <= 3x the bare NATS round trip.
- throughput: 1, 10 and 50 senders on alpha pipeline sends to beta; time until beta has
  stored them all. Goal: >= 10,000 msg/s.
- drain: NATS down, 100,000 messages acknowledged into alpha's outbox, a partition of
  --partition seconds, NATS back: time until beta has them all, and the daemons' RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from bench.common import RunningHive, median, percentile, pipeline, ratio
from hive.client import TrioClient
from hive.wire import encode_frame, request
from tests.federation_support import hive_config, outbox_depth, received
from tests.nats_harness import NatsServer

GOAL_P99_VS_BARE = 3.0
GOAL_MSG_S = 10_000
SENDERS = [f"s{i}" for i in range(50)]


def stored_from(hive: RunningHive, origin: str) -> int:
    with hive.db() as db:
        rows = db.execute("SELECT COUNT(*) FROM messages WHERE origin = ?", (origin,)).fetchall()
        return int(rows[0][0])


async def closed_loop(src_hive: RunningHive, dst_hive: RunningHive, to: str, n: int) -> list[float]:
    """ms from each send leaving the client to it arriving in the waiting recv."""
    out: list[float] = []
    dst_name = to.split("@")[0]
    async with (
        TrioClient.connect(src_hive.agent_socket("src")) as src,
        TrioClient.connect(dst_hive.agent_socket(dst_name)) as dst,
    ):
        for i in range(n):
            async with trio.open_nursery() as nursery:
                got: dict[str, float] = {}

                async def recv(got: dict[str, float] = got) -> None:
                    reply = await dst.request("recv", wait_seconds=30)
                    got["at"] = time.perf_counter()
                    await dst.ack(reply)

                nursery.start_soon(recv)
                await trio.sleep(0.001)  # the recv is parked before the send leaves
                sent = time.perf_counter()
                await src.call("send", to=to, body=f"m{i}")
            out.append((got["at"] - sent) * 1000)
    return out


def bare_nats(url: str, n: int) -> list[float]:
    async def run() -> list[float]:
        import nats

        nc = await nats.connect(url)

        async def echo(msg: object) -> None:
            await msg.respond(b"ok")  # type: ignore[attr-defined]

        await nc.subscribe("bench.echo", cb=echo)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await nc.request("bench.echo", b"x" * 16, timeout=5)
            out.append((time.perf_counter() - t) * 1000)
        await nc.close()
        return out

    return asyncio.run(run())


def durable_floor(url: str, root: Path, n: int) -> list[float]:
    """ms for the durable steps a cross-hive message takes, bare: a SQLite commit (FULL,
    WAL, as the store opens it), a JetStream publish to a file-stored stream awaiting its
    PubAck, and a second commit in another database. No hive code, no hops between threads:
    what durability alone costs on this machine, in this run."""
    from hive.store import connect

    dbs = [connect(root / f"floor-{side}.db") for side in ("sender", "receiver")]
    for db in dbs:
        db.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, body BLOB)")

    def commit(db: Any, i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO m (id, body) VALUES (?, ?)", (i, b"x" * 64))
        db.execute("COMMIT")

    async def run() -> list[float]:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="BENCH_FLOOR", subjects=["bench.floor"])  # file storage
        out = []
        for i in range(n):
            t = time.perf_counter()
            commit(dbs[0], i)
            await js.publish("bench.floor", b"x" * 64, timeout=5)
            commit(dbs[1], i)
            out.append((time.perf_counter() - t) * 1000)
        await nc.close()
        return out

    try:
        return asyncio.run(run())
    finally:
        for db in dbs:
            db.close()


def throughput(alpha: RunningHive, beta: RunningHive, senders: int, total: int) -> float:
    per = total // senders
    before = stored_from(beta, "alpha")
    frames = {
        s: [encode_frame(request(i, "send", to="dst@beta", body=f"{s}:{i}")) for i in range(per)]
        for s in SENDERS[:senders]
    }

    async def all_senders() -> None:
        async with trio.open_nursery() as nursery:
            for s, fs in frames.items():
                nursery.start_soon(pipeline, alpha.agent_socket(s), fs, 64)

    start = time.perf_counter()
    trio.run(all_senders)
    want = before + per * senders
    beta.wait_until(lambda: stored_from(beta, "alpha") >= want, 300, "throughput run")
    return per * senders / (time.perf_counter() - start)


def rss_mib(hive: RunningHive) -> float:
    return psutil.Process(hive.process.pid).memory_info().rss / 2**20


def drain(
    server: NatsServer, alpha: RunningHive, beta: RunningHive, count: int, wait: float
) -> None:
    before = stored_from(beta, "alpha")
    server.kill()
    frames = [encode_frame(request(i, "send", to="dst@beta", body=f"d{i}")) for i in range(count)]
    t = time.perf_counter()
    trio.run(pipeline, alpha.agent_socket("s0"), frames, 256)
    queued_s = time.perf_counter() - t
    print(f"drain: {count} messages acknowledged into the outbox in {queued_s:.1f} s "
          f"(outbox {outbox_depth(alpha)}); partition {wait:g} s")  # fmt: skip
    time.sleep(wait)  # the partition itself: what is measured starts after it
    peak = {"alpha": rss_mib(alpha), "beta": rss_mib(beta)}
    t = time.perf_counter()
    server.launch()
    deadline = t + 900
    while stored_from(beta, "alpha") < before + count and time.perf_counter() < deadline:
        peak = {
            "alpha": max(peak["alpha"], rss_mib(alpha)),
            "beta": max(peak["beta"], rss_mib(beta)),
        }
        time.sleep(0.5)
    took = time.perf_counter() - t
    got = stored_from(beta, "alpha") - before
    print(f"  drained {got}/{count} in {took:.1f} s ({got / took:.0f} msg/s, NATS start included)")
    print(
        f"  peak RSS during the drain: alpha {peak['alpha']:.0f} MiB, beta {peak['beta']:.0f} MiB"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency-count", type=int, default=300)
    p.add_argument("--throughput-total", type=int, default=10_000)
    p.add_argument("--drain-count", type=int, default=100_000)
    p.add_argument("--partition", type=float, default=60.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = NatsServer.start(root / "nats")
        agents = ["src", "loc", *SENDERS]
        alpha = RunningHive.start(root / "alpha", hive_config("alpha", server.url, agents))
        beta = RunningHive.start(root / "beta", hive_config("beta", server.url, ["dst"]))
        try:
            for hive, name in ((alpha, "loc"), (beta, "dst")):
                hive.admin("pause", names=[name])  # the recv reads its mail, not a turn
            run(args, server, alpha, beta)
        finally:
            for h in (alpha, beta):
                h.terminate()
            server.kill()


def run(
    args: argparse.Namespace, server: NatsServer, alpha: RunningHive, beta: RunningHive
) -> None:
    server_root = alpha.root.parent
    n = args.latency_count
    trio.run(closed_loop, alpha, beta, "dst@beta", 20)  # warm up the link
    cross = trio.run(closed_loop, alpha, beta, "dst@beta", n)
    local = trio.run(closed_loop, alpha, alpha, "loc", n)
    bare = bare_nats(server.url, n)
    floor = durable_floor(server.url, server_root, n)
    print(f"latency, send -> waiting recv, closed loop, {n} messages (ms)")
    rows = (("cross-hive", cross), ("local", local), ("bare NATS req/reply", bare),
            ("durable floor", floor))  # fmt: skip
    for label, lat in rows:
        print(f"  {label:20s} p50 {median(lat):7.3f}   p99 {percentile(lat, 99):7.3f}")
    vs = percentile(cross, 99) / percentile(bare, 99)
    print(f"  cross-hive p99 / bare NATS p99 = {vs:.1f}x (goal <= {GOAL_P99_VS_BARE:g}x: "
          f"{ratio(vs, GOAL_P99_VS_BARE)} of it)")  # fmt: skip
    vs_floor = percentile(cross, 99) / percentile(floor, 99)
    print(f"  cross-hive p99 / durable floor p99 = {vs_floor:.1f}x "
          f"(p50 {median(cross) / median(floor):.1f}x)")  # fmt: skip
    for senders in (1, 10, 50):
        rate = throughput(alpha, beta, senders, args.throughput_total)
        goal = f"{ratio(rate, GOAL_MSG_S)} of the {GOAL_MSG_S} goal"
        print(f"throughput, {senders:2d} senders, {args.throughput_total} messages: "
              f"{rate:7.0f} msg/s ({goal})")  # fmt: skip
    drain(server, alpha, beta, args.drain_count, args.partition)
    assert received(beta, "alpha")  # (the store was read through the same helper)


if __name__ == "__main__":
    main()
