"""Out-of-range values get a clear `bad_request` naming the field, on every edge.

A real supervisor with its dashboard: ids and timestamps that SQLite or datetime cannot
take (2**64 - 1, NaN, infinities, -2**63) go in through the admin socket, the agent socket
(what the MCP tools call) and the dashboard API; each must be refused by name, never
answered `internal` or `store_failed`, and nothing refused may be stored."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from hive.client import HiveError
from tests.control_support import ask, pending, wait_pending
from tests.ui_harness import DashboardHive, make_dashboard

__all__ = ["make_dashboard"]

CONFIG = """
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "alice"
"""

Make = Callable[..., DashboardHive]

BAD_IDS: list[Any] = [2**64 - 1, 2**63, 2**63 + 1, -1, 0, -(2**63), 1.5, "7", True]
BAD_TIMES: list[Any] = [
    math.nan,
    -math.inf,
    math.inf,
    -(2**63),
    2**63,
    2**64 - 1,
    1e300,
    -1e300,
    -1.0,
    "+nan",
    "+inf",
    "+1e309",
    "+-1e12",
    "0001-01-01T00:00:00+00:00",
]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    dash = make_dashboard(CONFIG)
    dash.hive.wait_until(
        lambda: len(dash.hive.admin("list")["agents"]) == 2, what="both agents to be up"
    )
    return dash


def refused(call: Callable[[], Any]) -> HiveError:
    with pytest.raises(HiveError) as info:
        call()
    return info.value


def assert_no_traceback(dash: DashboardHive) -> None:
    log = dash.hive.log_path.read_text(errors="replace")
    assert "Traceback" not in log, dash.hive.log_tail()


def test_schedule_prompt_with_an_impossible_time_is_bad_request_naming_at(
    dash: DashboardHive,
) -> None:
    hive = dash.hive
    with hive.agent("manager") as manager:
        for at in BAD_TIMES:
            error = refused(
                lambda at=at: manager.call("schedule_prompt", agent="alice", at=at, text="hi")
            )
            assert (error.code, "'at'" in error.message) == ("bad_request", True), (at, error)
        # A good time still works on the same connection.
        ok = manager.call("schedule_prompt", agent="alice", at="+3600", text="hi")
    assert [row["id"] for row in pending(hive)] == [ok["id"]]  # nothing refused was stored
    assert_no_traceback(dash)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_an_impossible_id_is_bad_request_on_every_socket_verb(
    dash: DashboardHive, bad: Any
) -> None:
    hive = dash.hive
    calls: dict[str, Callable[[], Any]] = {
        "transcript": lambda: hive.admin("transcript", turn_id=bad),
        "approve": lambda: hive.admin("approve", id=bad),
        "deny": lambda: hive.admin("deny", id=bad, reason="no"),
        "answer": lambda: hive.admin("answer", id=bad, answer="yes"),
        "cancel": lambda: hive.admin("cancel", id=bad),
    }
    with hive.agent("alice") as alice:
        calls["cancel_question (agent)"] = lambda: alice.call("cancel_question", id=bad)
        for what, call in calls.items():
            error = refused(call)
            field = "'turn_id'" if what == "transcript" else "'id'"
            assert error.code == "bad_request" and field in error.message, (what, error)
    assert_no_traceback(dash)


@pytest.mark.parametrize("bad", ["18446744073709551615", "9223372036854775808", "0"])
def test_an_impossible_id_is_a_400_on_the_dashboard_api(dash: DashboardHive, bad: str) -> None:
    attempts = [
        ("POST", f"/api/approvals/{bad}/approve", {}),
        ("POST", f"/api/approvals/{bad}/deny", {"reason": "no"}),
        ("POST", f"/api/questions/{bad}/answer", {"answer": "yes"}),
        ("POST", f"/api/questions/{bad}/cancel", {}),
        ("GET", f"/api/turns/{bad}/events", None),
    ]
    for method, path, body in attempts:
        r = dash.api(method, path, json=body) if body is not None else dash.api(method, path)
        assert r.status_code == 400, (path, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "bad_request" and "id'" in error["message"], (path, error)
    for since in ("nan", "inf", "-inf"):
        r = dash.api("GET", f"/api/stats?agent=alice&since={since}")
        assert r.status_code == 400 and "'since'" in r.json()["error"]["message"], r.text
    assert_no_traceback(dash)


def test_a_question_with_another_ttl_is_another_question(dash: DashboardHive) -> None:
    hive = dash.hive
    forever = ask(hive, "alice", question="Deploy?")
    [first] = wait_pending(hive)
    # The same text with a (fractional) TTL must not join the question that has none: it
    # is its own question, and it expires on its own TTL.
    brief = ask(hive, "alice", question="Deploy?", ttl_seconds=0.5)
    result = brief.result(timeout=30)
    assert result["status"] == "expired" and result["id"] != first["id"], result
    # The first asker still waits; asking exactly the same again joins it.
    again = ask(hive, "alice", question="Deploy?")
    hive.wait_until(lambda: [r["waiting"] for r in pending(hive)] == [2], what="the re-ask to join")
    hive.admin("answer", id=first["id"], answer="yes")
    answered = {"id": first["id"], "status": "answered", "answer": "yes"}
    for asked in (forever, again):
        result = asked.result()
        result.pop("ack_ids")  # the inbox copy of the outcome, acknowledged by the client
        assert result == answered
    assert_no_traceback(dash)


@pytest.mark.parametrize("bad", [-1, 0, -(2**63)])
def test_a_row_count_below_one_is_bad_request_not_every_row(dash: DashboardHive, bad: int) -> None:
    hive = dash.hive
    for i in range(3):
        hive.admin("send", to="alice", body=f"m{i}")
    for op, args in [
        ("messages", {"agent": "alice"}),
        ("turns", {"agent": "alice"}),
        ("events", {}),
        ("approvals", {}),
    ]:
        error = refused(lambda op=op, args=args: hive.admin(op, **args, limit=bad))
        assert error.code == "bad_request" and "'limit'" in error.message, (op, error)
    assert len(hive.admin("messages", agent="alice", limit=2**64 - 1)["messages"]) == 3
    assert_no_traceback(dash)
