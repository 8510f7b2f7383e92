"""Phones and accessibility (issue 14, item 6), in Chromium on a real hive: every page at
1440x900 and on a 390x844 phone has no sideways scroll and no critical or serious axe-core
violation (axe-core from ui/node_modules: `npm install` in ui/, a dev dependency), and a
keyboard reaches the fleet's controls."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.ui_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DashboardHive,
    make_dashboard,
    screenshot,
    wait_until,
)

__all__ = ["make_dashboard"]

AXE = Path(__file__).resolve().parent.parent / "ui" / "node_modules" / "axe-core" / "axe.min.js"

CONFIG = """
[hive]
backoff_initial = 0.1
restart_intensity = 1

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "crash", code = 3, message = "exploded on purpose"}]

[[agent]]
name = "carol"
parent = "manager"
"""

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
Make = Callable[..., DashboardHive]


def axe_script() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed ({AXE} is missing): run `npm install` in ui/")
    return AXE.read_text()


@contextmanager
def logged_in(dash: DashboardHive, viewport: dict[str, int]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the test injects axe-core inline; the pages keep their CSP.
            context = browser.new_context(
                viewport=viewport, is_mobile=viewport == PHONE, bypass_csp=True
            )
            context.add_cookies([{"name": "hive_operator", "value": dash.token, "url": dash.url}])
            yield context.new_page()
        finally:
            browser.close()


def serious_violations(page: Any, source: str) -> list[dict[str, Any]]:
    page.add_script_tag(content=source)
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
             const r = await axe.run(document, {resultTypes: ['violations']});
             return r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')
               .map(v => ({id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
           }"""
    )
    return found


def no_sideways_scroll(page: Any, width: int) -> None:
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: {scroll}px wide on a {width}px screen"


def with_something_to_show(dash: DashboardHive) -> None:
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "boom"})
    wait_until(lambda: dash.row("bob")["failed"], what="bob failed")
    with dash.hive.agent("manager") as manager:
        manager.call("request_spawn", name="scout")
        manager.call("send", to="operator", body="a routine report")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_is_axe_clean_and_fits(make_dashboard: Make, viewport: dict[str, int]) -> None:
    source = axe_script()
    dash = make_dashboard(CONFIG)
    with_something_to_show(dash)
    pages = {
        "login": "/login",
        "fleet": "/",
        "inbox": "/inbox",
        "agent": "/agents/bob",
    }
    problems: dict[str, Any] = {}
    with logged_in(dash, viewport) as page:
        for name, path in pages.items():
            page.goto(dash.url + path)
            if name != "login":
                page.wait_for_selector("#live[data-state=up]")
            if name == "fleet":
                page.wait_for_selector("#approvals article")
            if name == "inbox":
                page.wait_for_selector("#inbox-items li.item")
            no_sideways_scroll(page, viewport["width"])
            found = serious_violations(page, source)
            if found:
                problems[name] = found
            screenshot(page, f"a11y-{name}-{viewport['width']}")
    assert not problems, json.dumps(problems, indent=1)


def test_a_keyboard_reaches_the_fleet_controls(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG)
    with logged_in(dash, DESKTOP) as page:
        page.goto(dash.url)
        page.wait_for_selector('tr[data-agent="carol"]')
        reached = set()
        for _ in range(120):  # bounded: every control on this page is within reach
            page.keyboard.press("Tab")
            reached.add(
                page.evaluate(
                    """() => { const a = document.activeElement;
                               const row = a.closest('tr');
                               return (row ? row.dataset.agent + ':' : '') +
                                      (a.dataset.op || a.id || a.textContent.trim()); }"""
                )
            )
        for wanted in ("fleet-filter", "fleet-sort", "carol:pause", "carol:kick", "carol:restart"):
            assert wanted in reached, (wanted, sorted(reached))
