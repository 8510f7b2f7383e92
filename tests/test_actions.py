"""Every action answers (issue 14, item 3), in Chromium on a real hive: outcomes and no-ops
beside the buttons, lifecycle controls on the agent page, spawn and destroy, deny with a
reason, the history of decisions, scheduled prompts, events, and a question answered
elsewhere while the operator types."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard"]

# The dashboard's spawn makes process-sandbox agents here: this hive lets the operator.
CONFIG = """
[hive]
operator_sandboxes = ["process", "bwrap"]

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"

[[agent]]
name = "carol"
parent = "manager"
"""

Make = Callable[..., DashboardHive]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    return make_dashboard(CONFIG)


def outcome(page: Any, agent: str) -> str:
    text: str = page.inner_text(f'tr[data-agent="{agent}"] .outcome')
    return text


def test_fleet_buttons_say_what_they_did_or_that_there_was_nothing(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        row = 'tr[data-agent="bob"]'
        cancel = page.locator(f'{row} button[data-op="cancel"]')
        cancel.click()
        cancel.click()  # armed, then acts
        page.wait_for_selector(f'{row} .outcome:text-is("nothing to cancel: no turn running")')
        page.click(f'{row} button[data-op="pause"]')
        page.wait_for_selector(f'{row} .outcome:text-is("paused")')
        page.wait_for_selector(f'{row} button[data-op="resume"]')
        page.click(f'{row} button[data-op="resume"]')
        page.wait_for_selector(f'{row} .outcome:text-is("resumed")')
        page.click(f'{row} button[data-op="kick"]')
        page.wait_for_selector(f'{row} .outcome:has-text("kick")')


def test_agent_page_lifecycle_controls_answer(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/carol")
        page.wait_for_selector("#live[data-state=up]")

        def press(op: str, expect: str, confirm: bool = False) -> None:
            button = page.locator(f'#agent-actions button[data-op="{op}"]')
            button.click()
            if confirm:
                button.click()
            page.wait_for_selector(f'#action-result:text-is("{expect}")')

        press("reset", "nothing to reset")
        press("start", "already running")
        press("stop", "stopped", confirm=True)
        wait_until(lambda: dash.row("carol")["stopped"], what="carol stopped")
        page.wait_for_selector('#agent-badge:text-is("stopped")')
        press("stop", "already stopped", confirm=True)
        press("start", "started")
        wait_until(lambda: not dash.row("carol")["stopped"], what="carol started")
        page.click("#events-panel summary")
        page.wait_for_selector("#events tr:has-text('stopped')")
        page.wait_for_selector("#events tr:has-text('started')")
        screenshot(page, "agent-actions")


def test_spawn_and_destroy_from_the_pages(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        page.click("#spawn summary")
        page.fill("#spawn-name", "scout")
        page.fill("#spawn-parent", "manager")
        page.click("#spawn-form button[type=submit]")
        page.wait_for_selector("#spawn-result:text-is('spawned scout')")
        page.wait_for_selector('tr[data-agent="scout"]')
        assert dash.row("scout")["parent"] == "manager"
        page.fill("#spawn-name", "scout")  # the same name again: the error is shown
        page.click("#spawn-form button[type=submit]")
        page.wait_for_function(
            "() => /scout/.test(document.getElementById('spawn-result').textContent)"
            " && !/^spawned/.test(document.getElementById('spawn-result').textContent)"
        )
        page.goto(f"{dash.url}/agents/scout")
        page.wait_for_selector("#live[data-state=up]")
        destroy = page.locator('#agent-actions button[data-op="destroy"]')
        destroy.click()
        destroy.click()
        page.wait_for_selector("#action-result:has-text('destroyed (state kept in')")
        names = [r["name"] for r in dash.ok("GET", "/api/agents")["agents"]]
        assert "scout" not in names


def test_deny_takes_a_reason_and_the_history_shows_who_and_what(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        with dash.hive.agent("manager") as manager:
            request = manager.call("request_spawn", name="helper")
        card = page.locator(f'#approvals article[data-key="{request["id"]}"]')
        card.wait_for()
        card.locator("input.reason").fill("not this week")
        deny = card.locator("button", has_text="deny")
        deny.click()
        deny.click()
        # Nothing waits any more: the panel closed itself; its button opens it again.
        page.wait_for_selector("#pending-panel", state="hidden")
        page.click("#pending-toggle")
        page.click("#history-panel summary")
        item = page.locator(f'#history li[data-id="{request["id"]}"]')
        item.wait_for()
        text = item.inner_text()
        assert "denied" in text and "by operator" in text and "not this week" in text
        [row] = dash.ok("GET", "/api/approvals/history", params={"status": "denied"})["approvals"]
        assert row["resolution"]["reason"] == "not this week"


def test_a_scheduled_prompt_is_listed_and_cancelled_from_the_page(dash: DashboardHive) -> None:
    at = time.time() + 3600
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    with dash.hive.agent("manager") as manager:
        request = manager.call("schedule_prompt", agent="bob", at=iso, text="standup")
    dash.hive.admin("approve", id=request["id"])
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        item = page.locator("#scheduled li:has-text('standup')")
        item.wait_for()
        cancel = item.locator("button", has_text="cancel")
        cancel.click()
        cancel.click()
        page.wait_for_selector("#scheduled-panel", state="hidden")
    assert dash.hive.admin("scheduled")["scheduled"] == []


def test_a_question_answered_elsewhere_keeps_the_typed_text(dash: DashboardHive) -> None:
    dash.hive.admin("pause", names=["carol"])
    box: dict[str, Any] = {}

    def ask() -> None:
        with dash.hive.agent("carol", timeout=120) as carol:
            box["result"] = carol.call("ask_operator", question="Ship it?", ttl_seconds=600)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        card = page.locator("#questions article")
        card.wait_for()
        card.locator("input.answer").fill("half-typed thought")
        [question] = dash.ok("GET", "/api/approvals")["questions"]
        dash.ok("POST", f"/api/questions/{question['id']}/answer", json={"answer": "yes (cli)"})
        page.wait_for_selector("#questions article .hint:has-text('answered elsewhere')")
        assert "yes (cli)" in card.inner_text()
        assert card.locator("input.answer").input_value() == "half-typed thought"
        thread.join(timeout=30)
        assert box["result"]["answer"] == "yes (cli)"
        card.locator("button", has_text="dismiss").click()
        page.wait_for_function("() => !document.querySelector('#questions article')")
