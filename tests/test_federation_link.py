"""The NATS link's publishes against a real nats-server: a batch reaches the stream in
order and every publish gets its answer (PubAck, no stream, or no PubAck in time), each
with the token it was given; fetched messages are handed over and acked."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hive.federation.link import Incoming, NatsLink, Publication
from hive.federation.settings import FederationConfig
from tests.federation_support import nats
from tests.hive_harness import wait_until
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture

Result = tuple[Any, bool, str]


class Harness:
    """A link named alpha; what it delivered and what its publishes answered."""

    def __init__(self, url: str) -> None:
        self.lock = threading.Lock()
        self.delivered: list[bytes] = []
        self.results: list[Result] = []
        fed = FederationConfig(name="alpha", nats_url=url, publish_timeout=1.0)
        self.link = NatsLink(fed, self._deliver)

    def _deliver(self, items: list[Incoming]) -> bool:
        with self.lock:
            self.delivered.extend(item.data for item in items)
        self.link.settle([(item, True) for item in items])
        return True

    def _done(self, results: list[Result]) -> None:
        with self.lock:
            self.results.extend(results)

    def publish(self, subject: str, tokens: list[str]) -> dict[Any, Result]:
        """Publish one message per token; wait for every answer; the answers by token."""
        with self.lock:
            self.results = []
        self.link.publish(
            [Publication(subject, t.encode(), f"beta:{t}", t) for t in tokens], self._done
        )
        wait_until(lambda: len(self.results) >= len(tokens), 30, "every publish answered")
        with self.lock:
            assert len(self.results) == len(tokens)
            return {token: (token, ok, why) for token, ok, why in self.results}


@pytest.fixture
def harness(nats: Callable[..., NatsServer]) -> Iterator[tuple[Harness, NatsServer]]:
    server = nats()
    h = Harness(server.url)
    h.link.start()
    # Until its stream exists: a publish to it is stored.
    wait_until(lambda: h.publish("hive.alpha.in.beta", ["warm"])["warm"][1], 30, "the stream")
    yield h, server
    h.link.stop()


def test_a_batch_is_stored_in_order_and_each_publish_answered(
    harness: tuple[Harness, NatsServer],
) -> None:
    h, _ = harness
    tokens = [f"m{i}" for i in range(300)]
    answers = h.publish("hive.alpha.in.beta", tokens)
    assert sorted(answers) == sorted(tokens)
    assert all(ok and why == "" for _, ok, why in answers.values())
    wait_until(lambda: len(h.delivered) >= 301, 30, "the consumer to fetch them all")
    assert h.delivered == [b"warm", *(t.encode() for t in tokens)]


def test_a_subject_no_stream_takes_is_a_failed_publish(
    harness: tuple[Harness, NatsServer],
) -> None:
    h, _ = harness
    answers = h.publish("hive.nowhere.in.alpha", ["a", "b"])
    for token in ("a", "b"):
        _, ok, why = answers[token]
        assert not ok and why == "no stream answers on this subject"


def test_a_publish_without_a_puback_fails_after_publish_timeout(
    harness: tuple[Harness, NatsServer],
) -> None:
    h, server = harness
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)  # connected, but nothing answers
    try:
        answers = h.publish("hive.alpha.in.beta", ["late1", "late2"])
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    for token in ("late1", "late2"):
        _, ok, why = answers[token]
        assert not ok and why == "no PubAck within publish_timeout"
