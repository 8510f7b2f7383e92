"""Nothing acknowledged is lost between hives, and nothing is stored twice, when the
NATS server is killed and restarted mid-stream, when the receiving hive is killed with
SIGKILL mid-stream, and when the sending hive is killed with its outbox full. Every
acknowledged id is found exactly once in the receiver's store, in each sender's order."""

from __future__ import annotations

from collections.abc import Callable

from tests.federation_support import (
    Sender,
    assert_exactly_once_in_order,
    hive_config,
    nats,
    outbox_depth,
    received,
    send_all,
)
from tests.hive_harness import RunningHive, wait_until
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture

COUNT = 300


def _pair(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> tuple[NatsServer, RunningHive, RunningHive]:
    server = nats()
    alpha = make_hive(hive_config("alpha", server.url, ["s1", "s2"]), name="alpha")
    beta = make_hive(hive_config("beta", server.url, ["bob"]), name="beta")
    return server, alpha, beta


def _all_arrived(beta: RunningHive, senders: list[Sender]) -> None:
    for s in senders:
        s.join(150)
        assert not s.is_alive()
    want = sum(len(s.acked) for s in senders)
    beta.wait_until(lambda: len(received(beta, "alpha")) >= want, 90, "every acked message")
    acked = sorted(i for s in senders for i in s.acked)
    assert_exactly_once_in_order(received(beta, "alpha"), acked)


def test_nats_server_killed_and_restarted_mid_stream(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    server, alpha, beta = _pair(nats, make_hive)
    senders = [Sender(alpha, name, "bob@beta", COUNT) for name in ("s1", "s2")]
    for s in senders:
        s.start()
    wait_until(lambda: len(received(beta, "alpha")) >= 50, 60, "the stream to flow")
    server.kill()
    # The hive still acknowledges: its outbox holds what NATS cannot take now.
    wait_until(lambda: sum(len(s.acked) for s in senders) >= 2 * COUNT * 3 // 4, 60, "sends")
    server.launch()
    _all_arrived(beta, senders)
    assert all(s.unsure == 0 for s in senders)
    alpha.wait_until(lambda: outbox_depth(alpha) == 0, 30, "the outbox to drain")


def test_receiving_hive_killed_mid_stream(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    _, alpha, beta = _pair(nats, make_hive)
    senders = [Sender(alpha, name, "bob@beta", COUNT) for name in ("s1", "s2")]
    for s in senders:
        s.start()
    wait_until(lambda: len(received(beta, "alpha")) >= 100, 60, "the stream to flow")
    beta.kill()  # SIGKILL: stored-but-unacked messages come again from JetStream
    beta.restart()
    _all_arrived(beta, senders)


def test_sending_hive_killed_with_its_outbox_full(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    server, alpha, beta = _pair(nats, make_hive)
    first = send_all(alpha, "s1", "bob@beta", 20)
    beta.wait_until(lambda: len(received(beta, "alpha")) == 20, 30, "the first 20")
    server.kill()
    queued = send_all(alpha, "s1", "bob@beta", COUNT, tag="queued")
    queued += send_all(alpha, "s2", "bob@beta", COUNT, tag="queued2")
    assert outbox_depth(alpha) == 2 * COUNT
    alpha.kill()
    server.launch()
    alpha.restart()
    acked = sorted(first + queued)
    beta.wait_until(lambda: len(received(beta, "alpha")) >= len(acked), 90, "the outbox")
    assert_exactly_once_in_order(received(beta, "alpha"), acked)
    alpha.wait_until(lambda: outbox_depth(alpha) == 0, 30, "the outbox to drain")


def test_hives_that_start_while_nats_is_down(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    """Both hives start with no NATS to reach: they serve, acknowledge remote sends into
    the outbox, and deliver once NATS is there."""
    server = nats()
    server.kill()
    alpha = make_hive(hive_config("alpha", server.url, ["s1"]), name="alpha")
    beta = make_hive(hive_config("beta", server.url, ["bob"]), name="beta")
    acked = send_all(alpha, "s1", "bob@beta", 50)
    assert outbox_depth(alpha) == 50 and alpha.admin("list")["fleet"] == []
    server.launch()
    beta.wait_until(lambda: len(received(beta, "alpha")) >= 50, 60, "the queued messages")
    assert_exactly_once_in_order(received(beta, "alpha"), acked)
