"""Cost and budgets (issue 14, item 5) end to end: the REAL claude CLI plays each turn
against the fake Anthropic API; what its result event reports (tokens, total_cost_usd) is
recorded per turn, agent and model, shown by /api/stats, /api/cost and hivectl stats, and
a daily budget parks the agent after its turn (over_budget: no crash, no retry), the
operator told once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hive import spend
from hive.config import AgentConfig, HiveConfig
from tests.claude_hive import ClaudeHive, claude_agent, hive_toml
from tests.control_support import hivectl
from tests.fake_anthropic import FakeAnthropic, Text
from tests.hive_harness import RunningHive, wait_until
from tests.ui_harness import DashboardHive, make_dashboard, screenshot

__all__ = ["make_dashboard"]

MODEL = "claude-sonnet-4-5"  # a model the CLI knows the price of


@pytest.fixture
def start(api: FakeAnthropic, make_hive: Callable[..., RunningHive]) -> Callable[..., ClaudeHive]:
    def start(config: str) -> ClaudeHive:
        return ClaudeHive(make_hive(config, env=api.env()), api)

    return start


def budget_mail(hive: ClaudeHive) -> list[dict[str, Any]]:
    return [m for m in hive.messages("operator") if "over budget" in m["body"]]


def test_a_turn_s_cost_is_recorded_and_shown_everywhere(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    api.script(Text("done", input_tokens=1200, output_tokens=300))
    hive = start(hive_toml(claude_agent("alice", model=MODEL)))
    hive.admin("send", to="alice", body="one")
    [turn] = hive.wait_turns("alice", 1)
    assert turn["exit_class"] == "ok"
    wait_until(lambda: hive.admin("cost")["agents_today"], what="the turn's cost recorded")
    cost = hive.admin("cost")
    [alice] = cost["agents_today"]
    assert alice["key"] == "alice" and alice["turns"] == 1
    assert alice["input_tokens"] >= 1200 and alice["output_tokens"] >= 300
    assert alice["cost_usd"] > 0
    assert [m["key"] for m in cost["models_7d"]] == [MODEL]
    assert hive.status("alice")["cost_today_usd"] == pytest.approx(alice["cost_usd"], rel=1e-3)
    table = hivectl(hive.hive, "stats", json_out=False)
    assert table.returncode == 0 and "alice" in table.stdout and MODEL in table.stdout
    per_agent = hivectl(hive.hive, "stats", "alice").json()
    assert per_agent["cost"]["agents_7d"][0]["turns"] == 1


def test_over_budget_parks_after_the_turn_and_tells_the_operator_once(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    hive = start(hive_toml(claude_agent("alice", model=MODEL, daily_budget_tokens=10)))
    hive.admin("send", to="alice", body="one")
    [turn] = hive.wait_turns("alice", 1)
    assert turn["exit_class"] == "ok"  # the turn that spent the budget finished
    wait_until(lambda: hive.status("alice")["over_budget"], what="alice parked")
    row = hive.status("alice")
    assert not row["failed"] and row["retry_at"] is None and not row["running"]
    assert "daily budget of 10 tokens" in row["budget_reason"]
    # More mail while parked: kept, no turn, no second notice.
    for body in ("two", "three"):
        hive.admin("send", to="alice", body=body)
    wait_until(lambda: hive.status("alice")["inbox_depth"] == 2, what="mail queued")
    wait_until(lambda: len(budget_mail(hive)) == 1, what="the operator told")
    [event] = [
        e for e in hive.admin("events", agent="alice")["events"] if e["kind"] == "over_budget"
    ]
    assert "10 tokens" in event["data"]["detail"]
    inbox = hive.admin("inbox", kind="over_budget")["items"]
    assert [i["agent"] for i in inbox] == ["alice"] and inbox[0]["count"] == 1
    assert len(hive.turns("alice")) == 1
    # The operator's reset lets it spend on today: the queued mail is served.
    hive.admin("reset", names=["alice"])
    hive.wait_turns("alice", 2)
    assert not hive.status("alice")["over_budget"]
    assert len(budget_mail(hive)) == 1
    # ...and a restart of the daemon keeps that word: today's next mail is served too.
    hive.hive.kill()
    hive.hive.restart()
    hive.admin("send", to="alice", body="four")
    hive.wait_turns("alice", 3)
    assert not hive.status("alice")["over_budget"] and len(budget_mail(hive)) == 1


def test_the_hive_budget_parks_an_idle_agent_before_it_starts(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    config = hive_toml(
        claude_agent("alice", model=MODEL), claude_agent("bob", model=MODEL),
        daily_budget_tokens=10,
    )  # fmt: skip
    hive = start(config)
    hive.admin("send", to="alice", body="spend it")
    hive.wait_turns("alice", 1)
    wait_until(lambda: hive.status("alice")["over_budget"], what="alice parked")
    hive.admin("send", to="bob", body="anything")
    wait_until(lambda: hive.status("bob")["over_budget"], what="bob parked")
    assert "the hive's daily budget" in hive.status("bob")["budget_reason"]
    assert hive.turns("bob") == []  # parked before it started a turn
    # A restart of the daemon keeps today's spend: still parked, not told again.
    hive.hive.restart()
    wait_until(lambda: hive.status("bob")["over_budget"], what="bob still parked")
    assert len(budget_mail(hive)) == 2  # once for alice, once for bob


def test_the_budget_rules() -> None:
    ledger = spend.SpendLedger()
    day = 86400.0 * 20_000
    cfg = HiveConfig(daily_budget_usd=1.0)
    agent = AgentConfig("alice", daily_budget_tokens=50)
    assert spend.over_budget(cfg, agent, ledger, day) == ""
    ledger.add("alice", spend.Usage(input_tokens=30, cache_read_input_tokens=900), day)
    assert spend.over_budget(cfg, agent, ledger, day) == ""  # cache reads do not count
    ledger.add("bob", spend.Usage(output_tokens=20, cost_usd=1.5), day)
    assert "hive's daily budget of $1" in spend.over_budget(cfg, agent, ledger, day)
    ledger.add("alice", spend.Usage(output_tokens=20), day)
    assert "its daily budget of 50 tokens" in spend.over_budget(cfg, agent, ledger, day)
    assert spend.over_budget(cfg, agent, ledger, day + 86400) == ""  # a new day
    ledger.add("alice", spend.Usage(output_tokens=99), day)  # yesterday's, counted late
    assert ledger.today("alice", day + 86400) == spend.Usage()
    with pytest.raises(Exception, match="daily_budget_usd"):
        HiveConfig.from_toml_text("[hive]\ndaily_budget_usd = -1\n")


def test_the_dashboard_shows_the_budget_stop_once_and_the_cost(
    make_dashboard: Callable[..., DashboardHive], api: FakeAnthropic
) -> None:
    api.script(Text("done", input_tokens=1200, output_tokens=300))
    dash = make_dashboard(
        hive_toml(claude_agent("alice", model=MODEL, daily_budget_tokens=10)), env=api.env()
    )
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        dash.ok("POST", "/api/agents/alice/messages", json={"body": "one"})
        page.wait_for_selector(
            'tr[data-agent="alice"] .badge:text-is("over budget")', timeout=60_000
        )
        assert "daily budget of 10 tokens" in page.inner_text('tr[data-agent="alice"] .status')
        assert page.inner_text('tr[data-agent="alice"] button.fix') == "let it spend today"
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="alice"] .cost')
                   .textContent.startsWith('$0.0')"""
        )
        dash.ok("POST", "/api/agents/alice/messages", json={"body": "two"})  # parked: no news
        page.wait_for_selector("#notification-list li[data-kind=over_budget]")
        page.goto(f"{dash.url}/inbox?")
        page.select_option("#f-kind", "over_budget")
        page.wait_for_function(
            "() => document.querySelectorAll('#inbox-items li.item').length === 1"
        )
        assert "alice is over budget" in page.inner_text("#inbox-items li.item")
        page.goto(f"{dash.url}/agents/alice")
        page.wait_for_selector("#stats-summary dd")
        page.wait_for_function(
            "() => document.getElementById('stats-summary').textContent.includes('1200 in')"
        )
        screenshot(page, "agent-cost")


def test_cost_lists_the_budgets_of_spawned_agents_too(
    make_hive: Callable[..., RunningHive],
) -> None:
    """A spawned agent's settings live in the store, not in hive.toml: its daily budget is
    listed by `cost` as hive.toml's agents' are."""
    hive = make_hive('[[agent]]\nname = "manager"\n\n[[agent]]\nname = "declared"\n'
                     "daily_budget_usd = 2.0\n")  # fmt: skip
    hive.admin("spawn", name="scout", config={"daily_budget_tokens": 5000})
    budgets = hive.admin("cost")["budgets"]["agents"]
    assert budgets["declared"] == {"usd": 2.0, "tokens": 0}
    assert budgets["scout"] == {"usd": 0.0, "tokens": 5000}
    assert hive.admin("cost", agent="scout")["budgets"]["agents"] == {
        "scout": {"usd": 0.0, "tokens": 5000}
    }
