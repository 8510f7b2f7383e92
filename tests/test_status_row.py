"""The agent status row is one typed record (hive.status.AgentStatus): what the Agent actor
publishes, the admin socket returns, hivectl prints and the dashboard serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from hive.status import STATUS_FIELDS, AgentStatus, LastTurn, state_of
from tests.control_support import as_agent, hivectl
from tests.hive_harness import RunningHive

CONFIG = """
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "ping"
do = [{op = "set_status", text = "answering {from}"}, {op = "reply", body = "pong"}]
"""

ROW = TypeAdapter(AgentStatus)


def checked(row: dict[str, Any]) -> AgentStatus:
    """The row exactly as declared: every field, nothing else, each of its type."""
    assert sorted(row) == sorted(STATUS_FIELDS)
    return ROW.validate_python(row, strict=True)


def test_rows_from_the_admin_socket_are_agent_status_records(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG)
    as_agent(hive, "manager", "send", to="bob", body="ping")
    bob = hive.wait_until(
        lambda: (row := hive.status("bob"))["last_turn"] and row, what="bob's turn ended"
    )
    row = checked(bob)
    last = row["last_turn"]
    assert last is not None and last["exit_class"] == "ok"
    TypeAdapter(LastTurn).validate_python(last, strict=True)
    for listed in hive.admin("list")["agents"]:
        checked(listed)

    text = hivectl(hive, "status", "bob", json_out=False).stdout
    printed = [line.split(":")[0] for line in text.splitlines()]
    assert printed == list(STATUS_FIELDS)  # every field, in the record's order


def test_state_is_the_most_serious_flag_then_the_turn_state() -> None:
    assert state_of({"failed": True, "paused": True, "turn_state": "tool"}) == "failed"
    assert state_of({"needs_login": True, "stopped": True}) == "needs_login"
    assert state_of({"turn_state": "waiting_recv"}) == "waiting_recv"
    assert state_of({}) == "idle"
