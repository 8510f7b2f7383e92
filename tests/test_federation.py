"""Federation over a real nats-server: two hives (two supervisors, two state dirs)
exchange messages both ways; refusals come back to the sender as events; a hive without
[federation] refuses remote addresses clearly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hive.client import HiveError
from tests.federation_support import (
    assert_exactly_once_in_order,
    hive_config,
    nats,
    received,
    send_all,
    stream_messages,
)
from tests.hive_harness import RunningHive, wait_until
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture


def test_two_hives_exchange_both_ways(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    server = nats()
    alpha = make_hive(hive_config("alpha", server.url, ["alice"]), name="alpha")
    beta = make_hive(hive_config("beta", server.url, ["bob"]), name="beta")

    to_beta = send_all(alpha, "alice", "bob@beta", 40)
    to_alpha = send_all(beta, "bob", "alice@alpha", 40)

    beta.wait_until(lambda: len(received(beta, "alpha")) >= 40, what="alpha's mail at beta")
    alpha.wait_until(lambda: len(received(alpha, "beta")) >= 40, what="beta's mail at alpha")
    at_beta, at_alpha = received(beta, "alpha"), received(alpha, "beta")
    assert_exactly_once_in_order(at_beta, to_beta)
    assert_exactly_once_in_order(at_alpha, to_alpha)
    assert {(r[1], r[2]) for r in at_beta} == {("alice@alpha", "bob")}
    assert [r[3] for r in at_alpha] == [f"bob:{i}" for i in range(40)]
    # Stored and acked: the streams keep nothing (work-queue retention).
    wait_until(lambda: stream_messages(server.url, "HIVE_beta") == 0, 30, "beta's stream")
    wait_until(lambda: stream_messages(server.url, "HIVE_alpha") == 0, 30, "alpha's stream")
    # The sender's own record: delivered to the outbox, which is empty once PubAcked.
    alpha.wait_until(lambda: alpha.admin("messages", agent="alice")["messages"], what="mail")
    sent = alpha.messages("alice")
    assert {m["to"] for m in sent if m["from"] == "alice"} == {"bob@beta"}


def test_a_reply_goes_back_to_the_remote_sender(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    """A scripted agent answers the sender of what it got: ``carol@alpha``."""
    server = nats()
    alpha = make_hive(hive_config("alpha", server.url, ["carol"]), name="alpha")
    echo = (
        hive_config("beta", server.url, [])
        + '\n[[agent]]\nname = "echo"\n[[agent.script]]\nmatch = "*"\n'
        + 'do = [{op = "reply", body = "echo: {body}"}]\n'
    )
    beta = make_hive(echo, name="beta")
    send_all(alpha, "carol", "echo@beta", 1, tag="ping")
    alpha.wait_until(lambda: received(alpha, "beta"), what="the echo's reply")
    [(_, sender, to, body)] = received(alpha, "beta")
    assert (sender, to, body) == ("echo@beta", "carol", "echo: ping:0")
    beta.terminate()


def test_the_receiving_hive_refuses_what_its_policy_does_not_accept(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    server = nats()
    alpha = make_hive(hive_config("alpha", server.url, ["alice", "eve"]), name="alpha")
    beta = make_hive(
        hive_config("beta", server.url, ["bob"], accept='"*" = ["alice@alpha"]'), name="beta"
    )
    [ok] = send_all(alpha, "alice", "bob@beta", 1)
    [refused] = send_all(alpha, "eve", "bob@beta", 1)  # acknowledged: it was stored
    [nobody] = send_all(alpha, "alice", "nobody@beta", 1)

    alpha.wait_until(lambda: len(received(alpha, "beta")) >= 2, what="two refusals")
    notices = {r[2]: r for r in received(alpha, "beta")}
    assert notices["eve"][1] == "system@beta"
    assert f"your message {refused} to 'bob' was refused" in notices["eve"][3]
    assert "not_accepted" in notices["eve"][3]
    assert f"your message {nobody} to 'nobody' was refused" in notices["alice"][3]
    assert "unknown_agent" in notices["alice"][3]
    assert [r[0] for r in received(beta, "alpha")] == [ok]
    events = alpha.admin("events", agent="eve")["events"]
    refusal = next(e for e in events if e["kind"] == "federation_refused")
    assert refusal["data"]["code"] == "not_accepted" and refusal["data"]["id"] == refused


def test_remote_addresses_need_a_federation(make_hive: Callable[..., RunningHive]) -> None:
    alone = make_hive('[[agent]]\nname = "alice"\n', name="alone")
    with alone.agent("alice") as c:
        with pytest.raises(HiveError) as exc:
            c.call("send", to="bob@beta", body="hi")
        assert exc.value.code == "not_federated"
        with pytest.raises(HiveError) as exc:
            c.call("send", to="bob@Beta", body="hi")
        assert exc.value.code == "invalid_name" and "hive name" in exc.value.message
    with pytest.raises(HiveError) as exc:
        alone.admin("send", to="bob@", body="hi")
    assert exc.value.code == "invalid_name"


def test_operator_sends_own_hive_names_and_allowed_recipients(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    """hivectl's send takes bob@beta (from operator@alpha); alice@alpha on alpha is alice;
    allowed_recipients patterns apply to remote addresses before anything is stored."""
    server = nats()
    limited = '\n[[agent]]\nname = "lim"\nallowed_recipients = ["*@gamma", "alice"]\n'
    alpha = make_hive(hive_config("alpha", server.url, ["alice"]) + limited, name="alpha")
    beta = make_hive(hive_config("beta", server.url, ["bob"]), name="beta")
    sent = alpha.admin("send", to="bob@beta", body="from the operator")
    beta.wait_until(lambda: received(beta, "alpha"), what="the operator's message")
    assert received(beta, "alpha") == [(sent["id"], "operator@alpha", "bob", "from the operator")]
    with alpha.agent("lim") as c:
        c.call("send", to="alice@alpha", body="local after all")
        with pytest.raises(HiveError) as exc:
            c.call("send", to="bob@beta", body="not allowed")
        assert exc.value.code == "not_allowed" and "'bob@beta'" in exc.value.message
    local = [m for m in alpha.messages("alice") if m["from"] == "lim"]
    assert [(m["to"], m["body"]) for m in local] == [("alice", "local after all")]


def test_crash_notices_go_to_a_manager_on_another_hive(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    """[federation] manager = "manager@beta": alpha's crash notices reach beta's manager,
    from system@alpha, which beta's accept policy lets write to it."""
    server = nats()
    crasher = (
        '\n[[agent]]\nname = "crasher"\n[[agent.script]]\nmatch = "*"\n'
        'do = [{op = "crash", code = 3, message = "boom", times = 1}]\n'
    )
    alpha = make_hive(
        hive_config("alpha", server.url, [], federation_extra='manager = "manager@beta"\n')
        + crasher,
        name="alpha",
    )
    beta = make_hive(
        hive_config(
            "beta",
            server.url,
            ["manager"],
            accept='"*" = ["nobody@alpha"]\nmanager = ["system@alpha"]',
        ),
        name="beta",
    )
    alpha.admin("send", to="crasher", body="go")
    beta.wait_until(lambda: received(beta, "alpha"), 60, "the crash notice at beta")
    [(_, sender, to, body)] = received(beta, "alpha")[:1]
    assert (sender, to) == ("system@alpha", "manager")
    assert "agent 'crasher' crashed" in body
