"""hive.policy: who may send to whom, manager-only ops, and the per-agent rate limit."""

from __future__ import annotations

import pytest

from hive.config import AgentConfig
from hive.policy import MANAGER_ONLY_OPS, TokenBucket, check_manager_only, check_send
from hive.wire import WireError


def agent(name: str, allowed: tuple[str, ...] | None = None) -> AgentConfig:
    return AgentConfig(name=name, allowed_recipients=allowed)


# --- allowed_recipients ----------------------------------------------------------------------


def test_an_agent_without_allowed_recipients_may_send_anywhere() -> None:
    bob = agent("bob")
    for to in ("alice", "manager", "operator", "zed"):
        check_send(bob, "bob", to)


def test_an_agent_may_send_to_everyone_it_lists() -> None:
    bob = agent("bob", ("alice", "operator"))
    check_send(bob, "bob", "alice")
    check_send(bob, "bob", "operator")


def test_an_agent_may_not_send_outside_its_list_and_is_told_why() -> None:
    bob = agent("bob", ("alice", "operator"))
    with pytest.raises(WireError) as info:
        check_send(bob, "bob", "carol")
    assert info.value.code == "not_allowed"
    message = info.value.message
    assert "'bob' may not send to 'carol'" in message
    assert "allowed_recipients" in message
    assert "alice, operator" in message  # what it may do instead


def test_an_empty_list_allows_nobody() -> None:
    hermit = agent("hermit", ())
    for to in ("alice", "manager", "operator"):
        with pytest.raises(WireError) as info:
            check_send(hermit, "hermit", to)
        assert info.value.code == "not_allowed"
        assert "nobody" in info.value.message


def test_the_list_is_matched_exactly_not_by_prefix() -> None:
    bob = agent("bob", ("alice",))
    for to in ("alice-2", "alic", "ALICE"):
        with pytest.raises(WireError):
            check_send(bob, "bob", to)


@pytest.mark.parametrize("sender", ["manager", "operator", "system"])
def test_manager_operator_and_system_are_never_restricted(sender: str) -> None:
    # Even a manager config that lists recipients does not restrict the manager.
    check_send(agent(sender, ()) if sender == "manager" else None, sender, "anyone")


def test_a_sender_without_a_config_is_not_restricted() -> None:
    check_send(None, "ghost", "alice")


# --- manager-only ops ------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(MANAGER_ONLY_OPS))
def test_manager_only_ops_are_refused_to_other_agents(op: str) -> None:
    check_manager_only("manager", op)
    with pytest.raises(WireError) as info:
        check_manager_only("alice", op)
    assert info.value.code == "manager_only"
    assert f"'{op}'" in info.value.message


def test_kick_agent_is_manager_only() -> None:
    assert "kick_agent" in MANAGER_ONLY_OPS


@pytest.mark.parametrize("op", ["send", "recv", "set_status", "whoami", "ask_operator"])
def test_ordinary_ops_are_open_to_every_agent(op: str) -> None:
    check_manager_only("alice", op)


# --- TokenBucket ---------------------------------------------------------------------------


def test_a_new_bucket_allows_a_full_minute_as_a_burst_then_refuses() -> None:
    bucket = TokenBucket(per_minute=5)
    assert [bucket.take(now=100.0) for _ in range(7)] == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_per_minute_rate() -> None:
    bucket = TokenBucket(per_minute=60)  # one a second
    for _ in range(60):
        assert bucket.take(now=0.0)
    assert not bucket.take(now=0.0)
    assert not bucket.take(now=0.5)  # half a token is not a token
    assert bucket.take(now=1.0)
    assert not bucket.take(now=1.0)
    assert [bucket.take(now=4.0) for _ in range(4)] == [True, True, True, False]


def test_a_long_pause_refills_only_up_to_the_burst_size() -> None:
    bucket = TokenBucket(per_minute=3)
    assert all(bucket.take(now=0.0) for _ in range(3))
    later = 3600.0
    assert [bucket.take(now=later) for _ in range(4)] == [True, True, True, False]


def test_refused_attempts_do_not_cost_tokens() -> None:
    bucket = TokenBucket(per_minute=6)  # one every 10 s
    for _ in range(6):
        bucket.take(now=0.0)
    for t in range(9):  # hammering while empty
        assert not bucket.take(now=float(t))
    assert bucket.take(now=10.0)


def test_a_bucket_of_zero_never_allows() -> None:
    bucket = TokenBucket(per_minute=0)
    assert not bucket.take(now=0.0)
    assert not bucket.take(now=1e6)


def test_a_bucket_uses_the_monotonic_clock_by_default() -> None:
    bucket = TokenBucket(per_minute=2)
    assert bucket.take()
    assert bucket.take()
    assert not bucket.take()
