"""Helpers for the federation tests: hive configs on one NATS, and reading what a hive
stored from another hive, straight from its database file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hive.client import HiveError
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer

if TYPE_CHECKING:
    from tests.ui_harness import DashboardHive


def hive_config(
    name: str,
    urls: str | list[str],
    agents: list[str],
    accept: str = '"*" = ["*@*"]',
    federation_extra: str = "",
) -> str:
    servers = urls if isinstance(urls, str) else "[" + ", ".join(f'"{u}"' for u in urls) + "]"
    if isinstance(urls, str):
        servers = f'"{urls}"'
    agent_tables = "".join(
        f'\n[[agent]]\nname = "{a}"\nrate_limit_per_minute = 10000000\ninbox_cap = 1000000\n'
        for a in agents
    )
    return (
        "[hive]\nbackoff_initial = 0.05\n\n"
        f'[federation]\nname = "{name}"\nnats_url = {servers}\nretry_seconds = 0.2\n'
        f"{federation_extra}\n[federation.accept]\n{accept}\n{agent_tables}"
    )


def received(hive: RunningHive, origin: str) -> list[tuple[int, str, str, str]]:
    """(origin id, sender, recipient, body) of every message ``hive`` stored from
    ``origin``, in the order it stored them."""
    with hive.db() as db:
        rows = db.execute(
            "SELECT origin_id, sender, recipient, body FROM messages WHERE origin = ? ORDER BY id",
            (origin,),
        ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def outbox_depth(hive: RunningHive) -> int:
    with hive.db() as db:
        return int(db.execute("SELECT COUNT(*) FROM fed_outbox").fetchall()[0][0])


def send_all(hive: RunningHive, sender: str, to: str, count: int, tag: str = "") -> list[int]:
    """``count`` sends from ``sender``; the ids acknowledged, in order."""
    ids = []
    with hive.agent(sender) as c:
        for i in range(count):
            ids.append(int(c.call("send", to=to, body=f"{tag or sender}:{i}")["id"]))
    return ids


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Start nats-servers for a test; each is killed by its PID afterwards."""
    servers: list[NatsServer] = []

    def make(name: str = "n1", extra: str = "", port: int = 0) -> NatsServer:
        server = NatsServer.start(tmp_path / f"nats-{name}", extra, name, port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


def stored_ids(rows: list[tuple[int, str, str, str]]) -> list[int]:
    return [r[0] for r in rows]


def assert_exactly_once_in_order(
    rows: list[tuple[int, str, str, str]], acked: list[int], maybe: set[int] | None = None
) -> None:
    """Every acknowledged id is there once, and the stored order follows the sender's."""
    ids = stored_ids(rows)
    assert len(ids) == len(set(ids)), "a message was stored twice"
    missing = [i for i in acked if i not in set(ids)]
    assert not missing, f"{len(missing)} acknowledged messages never arrived: {missing[:10]}"
    extra = set(ids) - set(acked) - (maybe or set())
    assert not extra, f"stored messages nobody sent: {sorted(extra)[:10]}"
    for sender in {r[1] for r in rows}:
        theirs = [r[0] for r in rows if r[1] == sender]
        assert theirs == sorted(theirs), f"{sender}'s messages were stored out of order"


class Sender(threading.Thread):
    """Sends ``count`` messages from one agent as fast as acks come back, recording each
    acknowledged id; a send that fails (the daemon went away) is recorded as unsure."""

    def __init__(self, hive: RunningHive, agent: str, to: str, count: int) -> None:
        super().__init__(daemon=True)
        self.hive, self.agent, self.to, self.count = hive, agent, to, count
        self.acked: list[int] = []
        self.unsure = 0

    def run(self) -> None:
        i = 0
        deadline = time.monotonic() + 120
        while i < self.count and time.monotonic() < deadline:
            try:
                with self.hive.agent(self.agent, timeout=10) as c:
                    while i < self.count:
                        self.acked.append(
                            int(c.call("send", to=self.to, body=f"{self.agent}:{i}")["id"])
                        )
                        i += 1
            except (HiveError, OSError):
                self.unsure += 1
                i += 1  # that one may or may not have been stored
                time.sleep(0.05)


def stream_messages(url: str, stream: str) -> int:
    """How many messages a hive's inbound stream still holds (acked ones leave it)."""
    import asyncio

    async def count() -> int:
        import nats

        nc = await nats.connect(url, max_reconnect_attempts=0)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def alpha_and_beta(
    nats: Callable[..., NatsServer], make: Callable[..., DashboardHive]
) -> tuple[DashboardHive, DashboardHive]:
    """Two dashboard hives on one NATS server: alpha (agent alice) and beta (agent bob);
    beta takes operator requests from alpha, and alpha (no operators listed) none from beta."""
    url = nats().url
    alpha = make(hive_config("alpha", url, ["alice"]), name="alpha")
    beta = make(
        hive_config("beta", url, ["bob"], federation_extra='operators = ["alpha"]\n'), name="beta"
    )
    return alpha, beta
