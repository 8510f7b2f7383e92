"""Control plane: approval throughput, hivectl round trip, subscribe fan-out.

1. Approvals. The manager files N schedule_prompt requests (each acknowledged once its row
   is committed), then the operator approves all N; each approval commits the status
   change, the scheduled prompt and the notice to the manager in one transaction. Then N
   operator questions, each held open by its asker, are answered; an answer is done when
   the asker's held reply arrives. Clients pipeline (a window of requests in flight).
2. hivectl: the real command as a subprocess (what an operator or a script pays), next to
   a bare Python start and an in-process admin request.
3. Subscribe fan-out: N admin-socket subscribers (what `hivectl subscribe` holds open); an
   agent ("pulse", never taking a turn) sets its status at a fixed rate; latency is each
   subscriber's receive time minus the row's ``status_set_at`` (set by the Agent actor),
   so it covers actor -> store commit -> hub -> trio hop -> socket -> client.

    python bench/bench_control.py [--approvals 2000] [--subscribers 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

if not __package__:  # run as a script: the repository root makes `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, RunningHive, median, percentile, pipeline, ratio
from bench.limits import socket_limits, sqlite_limits
from hive.client import SyncClient
from hive.wire import FrameDecoder, encode_frame, request

CONFIG = """
[hive]
sqlite_synchronous = "FULL"

[[agent]]
name = "manager"
rate_limit_per_minute = 100000000

[[agent]]
name = "pulse"
rate_limit_per_minute = 100000000
"""


async def bench_approvals(hive: RunningHive, n: int, window: int) -> dict[str, float]:
    manager = hive.agent_socket("manager")
    start = time.perf_counter()
    reqs = [
        encode_frame(request(i + 1, "schedule_prompt", agent="asker0", at="+3000000", text=f"p{i}"))
        for i in range(n)
    ]
    filed = await pipeline(manager, reqs, window)
    file_rate = n / (time.perf_counter() - start)
    ids = [r["result"]["id"] for r in filed]
    approves = [encode_frame(request(i + 1, "approve", id=aid)) for i, aid in enumerate(ids)]
    start = time.perf_counter()
    approved = await pipeline(hive.admin_path, approves, window)
    approve_rate = n / (time.perf_counter() - start)
    assert all(r["result"]["status"] == "approved" for r in approved)
    return {"file": file_rate, "approve": approve_rate}


def askers(questions: int) -> list[str]:
    """Enough asking agents that none passes its cap of open questions."""
    from hive.actors.approvals import MAX_OPEN_QUESTIONS

    return [f"asker{i}" for i in range(-(-questions // MAX_OPEN_QUESTIONS))]


def config(questions: int) -> str:
    agents = "".join(f'\n[[agent]]\nname = "{name}"\n' for name in askers(questions))
    return CONFIG + agents


async def bench_questions(hive: RunningHive, n: int, window: int) -> dict[str, float]:
    """N held questions spread over the asker agents, answered by the operator."""
    names = askers(n)
    streams = [await trio.open_unix_socket(str(hive.agent_socket(a))) for a in names]
    for k, stream in enumerate(streams):
        mine = range(k, n, len(streams))
        await stream.send_all(
            b"".join(
                encode_frame(request(i + 1, "ask_operator", question=f"q{i}?", ttl_seconds=3600))
                for i in mine
            )
        )
    # Wait until every question is stored and held.
    with SyncClient(hive.admin_path, timeout=60) as admin:
        deadline = time.monotonic() + 120
        while len(admin.call("pending")["pending"]) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("questions were not all stored")
            await trio.sleep(0.05)
        qids = [row["id"] for row in admin.call("pending")["pending"]]
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    async def read_answers(stream: trio.SocketStream, expected: int) -> None:
        decoder = FrameDecoder()
        got = 0
        while got < expected:
            data = await stream.receive_some(1 << 16)
            if not data:
                raise RuntimeError("asker connection closed")
            now = time.perf_counter()
            for reply in decoder.feed(data):
                result = reply["result"]
                assert result["status"] == "answered", reply
                latencies.append(now - sent_at[result["id"]])
                got += 1

    answers = [
        encode_frame(request(i + 1, "answer", id=q, answer="yes")) for i, q in enumerate(qids)
    ]

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k, stream in enumerate(streams):
            nursery.start_soon(read_answers, stream, len(range(k, n, len(streams))))
        admin_stream = await trio.open_unix_socket(str(hive.admin_path))
        decoder = FrameDecoder()
        async with admin_stream:
            acked = sent = 0
            while acked < n:
                burst = min(window - (sent - acked), n - sent)
                if burst > 0:
                    now = time.perf_counter()
                    for q in qids[sent : sent + burst]:
                        sent_at[q] = now
                    await admin_stream.send_all(b"".join(answers[sent : sent + burst]))
                    sent += burst
                data = await admin_stream.receive_some(1 << 16)
                acked += sum(1 for _ in decoder.feed(data))
    rate = n / (time.perf_counter() - start)
    for stream in streams:
        await stream.aclose()
    return {
        "rate": rate,
        "p50_ms": median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def bench_hivectl(hive: RunningHive, runs: int) -> dict[str, tuple[float, float]]:
    def timed(argv: list[str]) -> tuple[float, float]:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
            samples.append((time.perf_counter() - start) * 1000)
        return median(samples), percentile(samples, 99)

    sock = str(hive.admin_path)
    hivectl = [sys.executable, "-m", "hive.cli.hivectl", "--socket", sock, "--json"]
    out = {
        "python -c pass": timed([sys.executable, "-c", "pass"]),
        "python -c 'import hive.client'": timed([sys.executable, "-c", "import hive.client"]),
        "hivectl version": timed([*hivectl, "version"]),
        "hivectl list": timed([*hivectl, "list"]),
        "hivectl pending": timed([*hivectl, "pending"]),
    }
    with SyncClient(sock, timeout=30) as c:
        for op in ("version", "pending", "list"):
            samples = []
            for _ in range(2000):
                start = time.perf_counter()
                c.call(op)
                samples.append((time.perf_counter() - start) * 1e6)
            out[f"in-process {op} (us)"] = (median(samples), percentile(samples, 99))
    return out


async def bench_fanout(
    hive: RunningHive, subscribers: int, rate: float, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    received = [0] * subscribers
    ready = trio.Event()
    subscribed = 0

    async def subscriber(i: int) -> None:
        nonlocal subscribed
        stream = await trio.open_unix_socket(str(hive.admin_path))
        decoder = FrameDecoder()
        async with stream:
            await stream.send_all(encode_frame(request(1, "subscribe", kinds=["agent"])))
            while True:
                data = await stream.receive_some(1 << 16)
                if not data:
                    return
                now = time.time()
                for frame in decoder.feed(data):
                    if frame.get("push") == "snapshot":
                        subscribed += 1
                        if subscribed == subscribers:
                            ready.set()
                        continue
                    update = frame.get("data") or {}
                    row = update.get("data") or {}
                    if update.get("key") == "pulse" and row.get("status_text", "").startswith(
                        "beat"
                    ):
                        latencies.append(now - row["status_set_at"])
                        received[i] += 1

    async def pulse(stop: trio.Event) -> None:
        stream = await trio.open_unix_socket(str(hive.agent_socket("pulse")))
        decoder = FrameDecoder()
        async with stream:
            i = 0
            while not stop.is_set():
                i += 1
                await stream.send_all(encode_frame(request(i, "set_status", text=f"beat {i}")))
                while not decoder.feed(await stream.receive_some(4096)):
                    pass
                await trio.sleep(1 / rate)

    async with trio.open_nursery() as nursery:
        for i in range(subscribers):
            nursery.start_soon(subscriber, i)
        await ready.wait()
        stop = trio.Event()
        nursery.start_soon(pulse, stop)
        await trio.sleep(seconds)
        stop.set()
        await trio.sleep(1.0)  # let the last changes arrive
        nursery.cancel_scope.cancel()
    beats = max(received) if received else 0
    return {
        "subscribers": subscribers,
        "samples": len(latencies),
        "missed": sum(beats - r for r in received),
        "p50_ms": median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--approvals", type=int, default=2000)
    p.add_argument("--questions", type=int, default=1000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--runs", type=int, default=20, help="hivectl runs per command")
    p.add_argument("--subscribers", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0, help="state changes per second")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    os.chdir(ROOT)
    sql, sock = sqlite_limits(), socket_limits()
    print(sql.line())
    print(sock.line())
    with tempfile.TemporaryDirectory() as tmp:
        hive = RunningHive.start(Path(tmp), config(args.questions))
        try:
            hive.admin("pause", names=["manager", *askers(args.questions)])
            print(f"== approvals ({args.approvals} schedule_prompt, window {args.window})")
            for window in (1, args.window):
                a = trio.run(
                    bench_approvals, hive, args.approvals // (4 if window == 1 else 1), window
                )
                full = sql.single_commits_per_s
                print(
                    f"window {window:>3}: filed {a['file']:,.0f}/s ({ratio(a['file'], full)} "
                    f"of 1-row FULL commits), approved {a['approve']:,.0f}/s "
                    f"({ratio(a['approve'], full)})"
                )
            print(f"== questions ({args.questions} held, answered with window {args.window})")
            q = trio.run(bench_questions, hive, args.questions, args.window)
            print(
                f"answered {q['rate']:,.0f}/s; answer -> asker's held reply "
                f"p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms"
            )
            print(f"== hivectl ({args.runs} runs each; median / p99)")
            for what, (med, p99) in bench_hivectl(hive, args.runs).items():
                unit = "" if "(us)" in what else " ms"
                extra = ""
                if what.startswith("in-process version"):
                    extra = f"  ({ratio(med, sock.median_ms * 1000)} the bare round trip)"
                print(f"{what:<36} {med:8.1f} / {p99:8.1f}{unit}{extra}")
            print(f"== subscribe fan-out ({args.subscribers} subscribers, {args.rate:g} changes/s)")
            f = trio.run(bench_fanout, hive, args.subscribers, args.rate, args.seconds)
            print(
                f"{f['samples']} deliveries, {f['missed']} missed; "
                f"latency p50 {f['p50_ms']:.2f} ms, "
                f"p99 {f['p99_ms']:.2f} ms, max {f['max_ms']:.2f} ms "
                f"(p50 {ratio(f['p50_ms'], sock.median_ms)} the bare round trip)"
            )
        finally:
            hive.terminate()


if __name__ == "__main__":
    main()
