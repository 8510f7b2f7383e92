"""An agent's row follows its inbox depth without one publish per message (issue 12).

A message in, handed over or acknowledged changes only the row's ``inbox_depth``: that
change alone is published at most once per ``DEPTH_PUBLISH_SECONDS`` (per message, a
steady stream woke the hub, its feeds, the Bus and the Store four more times a message and
showed in the send -> recv latency's tail). The last depth is never left unpublished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hive.actors.base import DEPTH_PUBLISH_SECONDS
from hive.client import SyncClient
from tests.hive_harness import RunningHive

CONFIG = """
[[agent]]
name = "alice"

[[agent]]
name = "bob"
rate_limit_per_minute = 1000000
"""

COUNT = 100


def rows_until(feed: SyncClient, agent: str, depth: int) -> int:
    """Read the feed until ``agent``'s row shows ``depth``; how many of its rows came."""
    rows = 0
    while True:
        data: dict[str, Any] = feed.read_frame()["data"]
        if data["kind"] == "agent" and data["key"] == agent:
            rows += 1
            if data["data"]["inbox_depth"] == depth:
                return rows


def most_rows(seconds: float) -> float:
    """The most rows a depth-only change may publish in ``seconds``: the first at once,
    then one per period (and one more for a period cut at either end)."""
    return 2 + seconds / DEPTH_PUBLISH_SECONDS


def test_a_stream_of_messages_publishes_a_few_rows_and_the_last_depth(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["alice"])  # her inbox only fills; nothing starts a turn
    with SyncClient(hive.admin_path, timeout=30) as feed, hive.agent("bob") as bob:
        feed.call("subscribe", kinds=["agent"])
        assert feed.read_frame()["push"] == "snapshot"
        start = time.monotonic()
        for i in range(COUNT):
            bob.call("send", to="alice", body=f"m{i}")  # each acknowledged: its own commit
        rows = rows_until(feed, "alice", COUNT)
        filled = time.monotonic() - start
        # Drained by a reader (handed over, then acknowledged): the row comes back to 0.
        start = time.monotonic()
        with hive.agent("alice") as alice:
            while (got := alice.request("recv", wait_seconds=0))["messages"]:
                alice.ack(got)
        drain_rows = rows_until(feed, "alice", 0)
        drained = time.monotonic() - start
    assert rows <= most_rows(filled), f"{rows} rows for {COUNT} messages in {filled:.3f} s"
    assert drain_rows <= most_rows(drained), f"{drain_rows} rows in {drained:.3f} s"
    assert hive.status("alice")["inbox_depth"] == 0
