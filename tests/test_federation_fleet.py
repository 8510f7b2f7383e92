"""One view of the fleet and an operator's verbs on another hive's agents, over a real
nats-server: `hivectl list` on one hive shows the other hive's agents and every link's
health; pause/resume/kick/restart/status/answer reach the owning hive, which authorises
and runs them; a hive that does not exist, an unauthorised hive and a remote refusal are
clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from hive.client import HiveError
from tests.control_support import ask, pending, wait_pending
from tests.federation_support import hive_config, nats
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture


def _fleet(hive: RunningHive) -> dict[str, dict[str, Any]]:
    return {row["hive"]: row for row in hive.admin("list")["fleet"]}


def _three(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> tuple[RunningHive, RunningHive, RunningHive]:
    url = nats().url
    alpha = make_hive(hive_config("alpha", url, ["alice"]), name="alpha")
    beta = make_hive(
        hive_config("beta", url, ["bob"], federation_extra='operators = ["alpha"]\n'), name="beta"
    )
    gamma = make_hive(hive_config("gamma", url, ["carl"]), name="gamma")
    # Each hive's NATS link connects after its start: wait until every hive sees all three
    # (its own row is written through its link), so a verb never races the connection.
    for hive in (alpha, beta, gamma):
        hive.wait_until(
            lambda h=hive: {"alpha", "beta", "gamma"} <= set(_fleet(h)),
            what="every hive in each fleet view",
        )
    return alpha, beta, gamma


def test_the_fleet_view_and_remote_operator_verbs(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive]
) -> None:
    alpha, beta, _gamma = _three(nats, make_hive)
    fleet = alpha.wait_until(
        lambda: (f := _fleet(alpha)) and {"alpha", "beta", "gamma"} <= set(f) and f,
        what="every hive in alpha's fleet view",
    )
    assert [a["name"] for a in fleet["beta"]["agents"]] == ["bob"]
    assert fleet["beta"]["connected"] and fleet["beta"]["rtt"] is not None
    assert fleet["beta"]["lag"] == 0 and fleet["alpha"]["outbox"] == {}
    shown = subprocess.run(
        [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(alpha.admin_path), "list"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "bob@beta" in shown and "carl@gamma" in shown
    assert "HIVE" in shown and "CONNECTED" in shown and "OUTBOX" in shown

    alpha.admin("pause", names=["bob@beta"])
    assert beta.status("bob")["paused"] is True
    assert alpha.admin("status", name="bob@beta")["paused"] is True
    alpha.admin("resume", names=["bob@beta"])
    assert beta.status("bob")["paused"] is False
    kicked = alpha.admin("kick", names=["bob"], hive="beta", note="from alpha")
    assert "error" not in kicked["agents"]["bob"]
    alpha.admin("restart", names=["bob@beta"])

    asked = ask(beta, "bob", question="Which port?")
    [question] = wait_pending(beta)
    assert alpha.admin("answer", id=question["id"], answer="8080", hive="beta")["status"] == (
        "answered"
    )
    assert "8080" in str(asked.result())
    assert pending(beta) == []


@pytest.mark.parametrize(
    ("who", "args", "code", "says"),
    [
        ("alpha", {"names": ["x@delta"]}, "unknown_hive", "no hive named 'delta'"),
        ("gamma", {"names": ["bob@beta"]}, "not_authorized", "operator requests from hive 'gamma'"),
        ("alpha", {"names": ["nobody@beta"]}, "unknown_agent", "hive 'beta': no agent named"),
        ("alpha", {"names": ["bob@beta", "carl@gamma"]}, "bad_request", "one hive per request"),
        ("alpha", {"names": ["bob@Beta"]}, "invalid_name", "invalid hive name"),
    ],
)
def test_remote_verbs_fail_clearly(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    who: str,
    args: dict[str, Any],
    code: str,
    says: str,
) -> None:
    hives = dict(zip(("alpha", "beta", "gamma"), _three(nats, make_hive), strict=True))
    with pytest.raises(HiveError) as exc:
        hives[who].admin("pause", **args)
    assert exc.value.code == code and says in exc.value.message
    assert hives["beta"].status("bob")["paused"] is False
