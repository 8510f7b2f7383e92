"""The operator's mailbox is capped, and every table that grows is pruned: old delivered
rows go, pending ones never do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hive.client import HiveError
from hive.config import HiveConfig
from hive.store import Queries, connect, migrate
from hive.store.retention import DAY, prune
from hive.wire import Envelope
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

CAPPED = """
[hive]
operator_mail_per_sender = 3
operator_mailbox_cap = 5

[[agent]]
name = "bob"

[[agent]]
name = "alice"
"""


def to_operator(hive: RunningHive, sender: str, body: str) -> Any:
    """The send's result, or the HiveError it was refused with."""
    try:
        with hive.agent(sender) as c:
            return c.call("send", to="operator", body=body)
    except HiveError as exc:
        return exc


def operator_bodies(hive: RunningHive) -> list[str]:
    return sorted(m["body"] for m in hive.messages("operator") if m["to"] == "operator")


def test_the_operator_mailbox_refuses_past_its_caps_and_loses_nothing_acknowledged(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CAPPED)
    sent = {f"bob {i}": to_operator(hive, "bob", f"bob {i}") for i in range(4)}
    sent |= {f"alice {i}": to_operator(hive, "alice", f"alice {i}") for i in range(3)}
    refused = {body: r for body, r in sent.items() if isinstance(r, HiveError)}
    assert sorted(refused) == ["alice 2", "bob 3"]
    assert all(r.code == "mailbox_full" for r in refused.values())
    assert "operator_mail_per_sender = 3" in refused["bob 3"].message  # bob's own cap
    assert "operator_mailbox_cap = 5" in refused["alice 2"].message  # the whole mailbox
    assert "hivectl clear-mail" in refused["bob 3"].message  # what makes room
    acked = sorted(body for body in sent if body not in refused)
    assert operator_bodies(hive) == acked

    # The count is the store's: a daemon killed and restarted still refuses.
    hive.kill()
    hive = hive.restart()
    assert isinstance(to_operator(hive, "bob", "after the restart"), HiveError)
    assert operator_bodies(hive) == acked

    # The operator makes room: only bob's mail goes, and bob may write again.
    assert hive.admin("clear_mail", sender="bob") == {"deleted": 3}
    assert operator_bodies(hive) == ["alice 0", "alice 1"]
    assert "id" in to_operator(hive, "bob", "room again")
    assert operator_bodies(hive) == ["alice 0", "alice 1", "room again"]


def test_clear_mail_refuses_bad_arguments(make_hive: MakeHive) -> None:
    hive = make_hive(CAPPED)
    for args, code in (
        ({"sender": "BAD NAME"}, "invalid_name"),
        ({"before_id": 2**64 - 1}, "bad_request"),
        ({"before_id": "7"}, "bad_request"),
    ):
        with pytest.raises(HiveError) as info:
            hive.admin("clear_mail", **args)
        assert info.value.code == code


PRUNED = """
[hive]
message_retention_days = 0.00002  # 1.7 s
prune_interval = 0.1

[[agent]]
name = "bob"

[[agent]]
name = "sleeper"
"""


def test_pruning_removes_old_delivered_messages_and_never_a_pending_one(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(PRUNED)
    hive.admin("pause", names=["sleeper"])
    waiting = hive.admin("send", to="sleeper", body="wait for me")["id"]
    delivered = to_operator(hive, "bob", "read and forgotten")["id"]

    def ids() -> list[int]:
        return [r[0] for r in hive.db().execute("SELECT id FROM messages ORDER BY id")]

    hive.wait_until(lambda: delivered not in ids(), what="the delivered message to be pruned")
    assert ids() == [waiting]
    assert hive.status("sleeper")["inbox_depth"] == 1
    hive.admin("resume", names=["sleeper"])
    hive.wait_until(lambda: hive.status("sleeper")["inbox_depth"] == 0, what="the old mail served")


# --- every rule, on a real database file ------------------------------------------------------


def test_each_table_keeps_what_its_rule_keeps(tmp_path: Path) -> None:
    conn = connect(tmp_path / "hive.db")
    migrate(conn)
    q = Queries(conn)
    old, fresh = time.time() - 100 * DAY, time.time()
    with conn:
        q.insert_messages(
            [Envelope(id=i, sender="bob", to="alice", body=f"m{i}", ts=old) for i in range(1, 8)]
        )
        q.mark_delivered([1, 2, 3, 4, 5], "turn", 1)
        conn.execute("UPDATE messages SET delivered_at = ? WHERE id <= 4", (old,))
        # turns: two old ended ones and an old unfinished one for bob, alice's only turn
        for tid, agent, ended in ((1, "bob", old), (2, "bob", old), (3, "bob", None),
                                  (4, "alice", old)):  # fmt: skip
            conn.execute(
                "INSERT INTO turns (id, agent, started_at, ended_at) VALUES (?, ?, ?, ?)",
                (tid, agent, old, ended),
            )
            q.add_turn_events(tid, 0, [("text", {"t": i}) for i in range(3)])
        conn.execute("UPDATE turn_events SET ts = ?", (old,))
        conn.execute(
            "INSERT INTO events (ts, agent, kind) VALUES (?, 'bob', 'crash'), (?, 'bob', 'crash')",
            (old, fresh),
        )
        conn.execute(
            "INSERT INTO approvals (id, agent, kind, requested_at, status, resolved_at) VALUES "
            "(1, 'bob', 'question', ?, 'answered', ?), (2, 'bob', 'question', ?, 'pending', NULL)",
            (old, old, old),
        )
    cfg = HiveConfig(prune_batch=2)
    passes = 0
    while True:  # small batches: a pass that found a full batch asks for another
        with conn:
            result = prune(q, cfg, time.time())
        passes += 1
        if not result.more:
            break
    assert passes > 1

    def col(sql: str) -> list[Any]:
        return [r[0] for r in conn.execute(sql)]

    # delivered and old: gone; delivered recently (5) and pending (6, 7, however old): kept
    assert col("SELECT id FROM messages ORDER BY id") == [5, 6, 7]
    # events of ended turns older than 14 days: gone; the unfinished turn keeps its own
    assert col("SELECT DISTINCT turn_id FROM turn_events") == [3]
    # old turns go after their events, but never an agent's newest nor an unfinished one
    assert col("SELECT id FROM turns ORDER BY id") == [3, 4]
    assert col("SELECT ts FROM events") == [fresh]
    assert col("SELECT status FROM approvals") == ["pending"]


def test_retention_settings_are_checked(tmp_path: Path) -> None:
    from hive.config import ConfigError

    for bad in ("message_retention_days = -1", "prune_batch = 0", "operator_mailbox_cap = -5",
                "event_retention_days = nan"):  # fmt: skip
        with pytest.raises(ConfigError):
            HiveConfig.from_toml_text(f"[hive]\n{bad}\n")
