"""nats-py from a trio program: a dedicated asyncio thread vs trio-asyncio.

hive's IO thread is trio and nats-py is asyncio. This measures, against one nats-server on
loopback, N sequential request/reply round trips and N JetStream publishes (each awaiting
its PubAck, 256 in flight) started from trio, two ways:

- thread: nats-py on its own asyncio loop in its own thread (what hive.federation.link
  does); trio hands work over with call_soon_threadsafe and is woken with its trio token;
- trio-asyncio: nats-py on an asyncio loop running inside trio's (one thread).

The numbers say what each bridge costs; docs/federation.md says why hive takes the thread.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import median, percentile
from tests.nats_harness import NatsServer


async def setup(url: str, stream: str) -> tuple[Any, Any]:
    import nats

    nc = await nats.connect(url)

    async def echo(msg: Any) -> None:
        await msg.respond(b"ok")

    await nc.subscribe("bench.echo", cb=echo)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream}.x"])
    return nc, js


async def measure(run: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]], js: Any,
                  nc: Any, stream: str, n: int) -> tuple[list[float], float]:  # fmt: skip
    rtts = []
    for _ in range(n):
        t = time.perf_counter()
        await run(lambda: nc.request("bench.echo", b"x", timeout=5))
        rtts.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    limiter = trio.Semaphore(256)

    async def one() -> None:
        async with limiter:
            await run(lambda: js.publish(f"{stream}.x", b"y" * 100))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            await limiter.acquire()
            limiter.release()
            nursery.start_soon(one)
    return rtts, n / (time.perf_counter() - t)


async def with_thread(url: str, n: int) -> tuple[list[float], float]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    token = trio.lowlevel.current_trio_token()

    async def run(make: Callable[[], Awaitable[Any]]) -> Any:
        done = trio.Event()
        box: list[Any] = []

        def finished(fut: asyncio.Future[Any]) -> None:
            box.append(fut.result())
            token.run_sync_soon(done.set)

        def start() -> None:
            loop.create_task(make()).add_done_callback(finished)  # type: ignore[arg-type]

        loop.call_soon_threadsafe(start)
        await done.wait()
        return box[0]

    nc, js = asyncio.run_coroutine_threadsafe(setup(url, "THREAD"), loop).result(10)
    try:
        return await measure(run, js, nc, "THREAD", n)
    finally:
        asyncio.run_coroutine_threadsafe(nc.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


async def with_trio_asyncio(url: str, n: int) -> tuple[list[float], float]:
    import trio_asyncio

    async with trio_asyncio.open_loop():

        async def run(make: Callable[[], Awaitable[Any]]) -> Any:
            return await trio_asyncio.aio_as_trio(make)()

        nc, js = await trio_asyncio.aio_as_trio(setup)(url, "TRIOASYNCIO")
        try:
            return await measure(run, js, nc, "TRIOASYNCIO", n)
        finally:
            await trio_asyncio.aio_as_trio(nc.close)()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=5000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer.start(Path(tmp) / "nats")
        try:
            print(f"{args.count} request/reply round trips and JetStream publishes from trio")
            for label, fn in (("thread", with_thread), ("trio-asyncio", with_trio_asyncio)):
                rtts, rate = trio.run(fn, server.url, args.count)
                p50, p99 = median(rtts), percentile(rtts, 99)
                print(f"  {label:13s} request p50 {p50:.3f} ms  p99 {p99:.3f} ms   "
                      f"JetStream publish {rate:7.0f} msg/s")  # fmt: skip
        finally:
            server.kill()


if __name__ == "__main__":
    main()
