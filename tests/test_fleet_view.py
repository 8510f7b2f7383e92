"""The fleet view (issue 14, item 2) in Chromium on a real hive: 36 agents fit on a
1440x900 screen with approvals waiting beside the table, each stuck agent says why and
offers its action, countdowns count down, filters and sorts work, and a dropped
connection greys the data and says since when."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.test_supervision import ADMISSION_CONFIG
from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard"]

STUCK = """
[hive]
backoff_initial = 0.1
restart_intensity = 2
restart_period = 60
rate_limit_backoff = 40

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "crash", code = 3, message = "exploded on purpose"}]

[[agent]]
name = "loginless"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "exit", code = 1, class = "needs_login", detail = "Invalid API key"}]

[[agent]]
name = "limited"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "exit", code = 1, class = "rate_limited", detail = "429 rate limit"}]
"""

Make = Callable[..., DashboardHive]


def fleet_config(workers: int) -> str:
    lines = [STUCK]
    for i in range(workers):
        lines.append(f'[[agent]]\nname = "worker{i:02d}"\nparent = "manager"\n')
    return "\n".join(lines)


def make_stuck(dash: DashboardHive) -> None:
    for name in ("bob", "loginless", "limited"):
        dash.ok("POST", f"/api/agents/{name}/messages", json={"body": "work"})
    wait_until(lambda: dash.row("bob")["failed"], timeout=60, what="bob failed")
    wait_until(lambda: dash.row("loginless")["needs_login"], timeout=60, what="needs_login")
    wait_until(lambda: dash.row("limited")["retry_at"], timeout=60, what="limited backing off")


def cell(page: Any, agent: str, selector: str) -> str:
    text: str = page.locator(f'tr[data-agent="{agent}"] {selector}').inner_text()
    return text


def test_36_agents_fit_one_screen_with_approvals_beside_the_table(make_dashboard: Make) -> None:
    dash = make_dashboard(fleet_config(32))  # 4 + 32 = 36 agents
    with dash.browser() as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        page.wait_for_function("() => document.querySelectorAll('#agent-rows tr').length === 36")
        top_before = page.evaluate(
            "() => document.getElementById('agents').getBoundingClientRect().top"
        )
        with dash.hive.agent("manager") as manager:
            for i in range(4):
                manager.call("request_spawn", name=f"scout{i}")
        page.wait_for_selector("#pending-summary:has-text('4 approvals')")
        page.wait_for_function("() => document.querySelectorAll('#approvals article').length === 4")
        box = page.evaluate(
            """() => ({top: document.getElementById('agents').getBoundingClientRect().top,
                      bottom: document.querySelector('#agent-rows tr:last-child')
                                .getBoundingClientRect().bottom,
                      scrollX: document.documentElement.scrollWidth,
                      panelLeft: document.getElementById('pending-panel')
                                .getBoundingClientRect().left,
                      tableRight: document.getElementById('agents')
                                .getBoundingClientRect().right})"""
        )
        screenshot(page, "fleet-36")
        assert box["top"] == top_before  # the approvals did not push the table down
        assert box["bottom"] <= 900, box  # all 36 rows on one screen
        assert box["scrollX"] <= 1440, box  # no sideways scroll
        assert box["panelLeft"] >= box["tableRight"], box  # the panel is beside the table
        # The operator can close the panel; the count stays in the bar.
        page.click("#pending-toggle")
        page.wait_for_selector("#pending-panel", state="hidden")
        assert page.get_attribute("#pending-toggle", "aria-expanded") == "false"
        assert "4 approvals" in page.inner_text("#pending-toggle")


def test_stuck_agents_say_why_and_offer_their_action(make_dashboard: Make) -> None:
    dash = make_dashboard(fleet_config(0))
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        make_stuck(dash)
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="loginless"] .status')
                   .textContent.includes('Invalid API key')"""
        )
        assert cell(page, "loginless", ".action-hint") == "run: hivectl login loginless"
        assert cell(page, "loginless", "button.fix") == "reset after login"
        assert "429 rate limit" in cell(page, "limited", ".status")
        assert cell(page, "limited", "button.fix") == "retry now"
        assert "exploded on purpose" in cell(page, "bob", ".status")
        assert cell(page, "bob", "button.fix") == "reset"
        # The rate-limit countdown counts down in place.
        first = cell(page, "limited", ".badge")
        assert first.startswith("retry in ")
        page.wait_for_function(
            f"""() => {{ const t = document.querySelector('tr[data-agent="limited"] .badge')
                        .textContent; return t.startsWith('retry in ') && t !== {first!r}; }}"""
        )
        screenshot(page, "fleet-stuck")
        # The action answers: the outcome shows next to the buttons.
        page.click('tr[data-agent="loginless"] button.fix')
        page.wait_for_selector('tr[data-agent="loginless"] .outcome:text-is("reset")')
        page.click('tr[data-agent="limited"] button.fix')
        page.wait_for_selector('tr[data-agent="limited"] .outcome:has-text("restarted")')


def test_state_counts_filter_and_sort(make_dashboard: Make) -> None:
    dash = make_dashboard(fleet_config(3))
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        make_stuck(dash)
        page.wait_for_selector("#state-counts button[data-state=failed]:has-text('failed 1')")
        page.wait_for_selector("#state-counts button[data-state=idle]:has-text('idle 4')")

        def visible() -> list[str]:
            names: list[str] = page.eval_on_selector_all(
                "#agent-rows tr:not([hidden])", "rows => rows.map(r => r.dataset.agent)"
            )
            return names

        page.click("#state-counts button[data-state=failed]")
        assert visible() == ["bob"]
        page.click("#state-counts button[data-state=failed]")  # again: the filter is off
        assert len(visible()) == 7
        page.fill("#fleet-filter", "worker0")
        assert visible() == ["worker00", "worker01", "worker02"]
        page.fill("#fleet-filter", "nobody-is-called-this")
        page.wait_for_selector("#fleet-none:not([hidden])")
        page.fill("#fleet-filter", "")
        page.select_option("#fleet-sort", "state")
        assert visible()[:3] == ["bob", "loginless", "limited"]  # the stuck ones first
        page.select_option("#fleet-sort", "name")
        assert visible() == sorted(visible())


def test_a_dropped_connection_greys_the_data_and_says_since_when(make_dashboard: Make) -> None:
    dash = make_dashboard(fleet_config(0))
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        dash.hive.terminate()
        page.wait_for_selector("body.stale", timeout=30_000)
        assert "offline since" in page.inner_text("#live")
        screenshot(page, "fleet-offline")
        dash.hive = dash.hive.restart()
        page.wait_for_selector("body:not(.stale)", timeout=30_000)
        page.wait_for_selector("#live[data-state=up]")
        assert page.inner_text("#live") == "live"


def test_a_queued_turn_says_so_and_why_in_the_table_and_on_its_page(make_dashboard: Make) -> None:
    """Turn admission (issue 12): a turn held for a slot shows as `queued`, with the
    admission's reason where the table says what an agent does, and on the agent's page."""
    dash = make_dashboard(ADMISSION_CONFIG)  # holder, waiter, other; one turn at a time
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        dash.ok("POST", "/api/agents/holder/messages", json={"body": "hold"})
        wait_until(lambda: dash.row("holder")["turn_state"] == "waiting_recv", what="holder")
        dash.ok("POST", "/api/agents/waiter/messages", json={"body": "work"})
        page.wait_for_selector('tr[data-agent="waiter"] .badge:text-is("queued")')
        assert "max_concurrent_turns = 1" in cell(page, "waiter", ".status")
        page.wait_for_selector("#state-counts button[data-state=queued]:has-text('queued 1')")
        page.goto(f"{dash.url}/agents/waiter")
        page.wait_for_selector('#agent-badge:text-is("queued")')
        assert "max_concurrent_turns = 1" in page.inner_text("#agent-status")
        # The slot frees: the queued turn runs, and the badge leaves `queued`.
        dash.ok("POST", "/api/agents/holder/messages", json={"body": "release"})
        wait_until(lambda: dash.row("waiter")["last_turn"], what="waiter's turn")
        page.wait_for_function(
            "() => document.getElementById('agent-badge').textContent !== 'queued'"
        )
