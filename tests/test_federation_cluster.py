"""Three hives on a three-node NATS cluster (JetStream, every hive's stream with
replicas = 3): one node is killed with SIGKILL mid-stream, and every acknowledged message
still arrives exactly once, in each sender's order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.federation_support import (
    Sender,
    assert_exactly_once_in_order,
    hive_config,
    nats,
    received,
)
from tests.hive_harness import RunningHive, wait_until
from tests.nats_harness import NatsServer, free_port

__all__ = ["nats"]  # the fixture

COUNT = 200
RING = [("alpha", "beta"), ("beta", "gamma"), ("gamma", "alpha")]  # (from, to)


def _cluster(nats: Callable[..., NatsServer]) -> list[NatsServer]:
    routes = [free_port() for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    servers = []
    for i in range(3):
        others = ", ".join(f'"nats://127.0.0.1:{p}"' for j, p in enumerate(routes) if j != i)
        cluster = (
            f'cluster {{ name: "hive-fleet", listen: 127.0.0.1:{routes[i]}, routes: [{others}] }}'
        )
        servers.append(nats(f"n{i + 1}", cluster, ports[i]))
    return servers


async def _replicas(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url, max_reconnect_attempts=0)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.config.num_replicas or 0)
    finally:
        await nc.close()


def test_three_hives_survive_a_cluster_node_killed_mid_stream(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    servers = _cluster(nats)
    urls = [s.url for s in servers]
    hives = {
        name: make_hive(
            hive_config(name, urls, ["w"], federation_extra="replicas = 3\n"), name=name
        )
        for name in ("alpha", "beta", "gamma")
    }
    senders = {(src, dst): Sender(hives[src], "w", f"w@{dst}", COUNT) for src, dst in RING}
    for s in senders.values():
        s.start()
    wait_until(
        lambda: all(len(received(hives[dst], src)) >= 40 for src, dst in RING),
        90,
        "mail flowing on every link",
    )
    for name in hives:
        assert asyncio.run(_replicas(urls[1], f"HIVE_{name}")) == 3
    servers[0].kill()
    for (src, dst), s in senders.items():
        s.join(150)
        assert not s.is_alive() and s.unsure == 0
        _wait_for(hives[dst], src, len(s.acked))
        assert_exactly_once_in_order(received(hives[dst], src), s.acked)


def _wait_for(hive: RunningHive, origin: str, count: int) -> None:
    hive.wait_until(lambda: len(received(hive, origin)) >= count, 120, f"{origin}'s mail")
