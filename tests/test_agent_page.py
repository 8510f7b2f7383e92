"""The agent page at depth (issue 14, item 4), in Chromium on a real hive: turn history
paged back to the first turn, the running turn's elapsed time, a foldable inbox, a jump
to other agents, and /model that takes only a model the hive knows (or --force) and never
sends a mistyped command as a message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.control_support import hivectl
from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard"]

CONFIG = """
[hive]
models = ["claude-sonnet-4-5", "claude-haiku-4-5"]

[[agent]]
name = "bob"
[[agent.script]]
match = "ping*"
do = [{op = "reply", body = "pong"}]
[[agent.script]]
match = "slow"
do = [{op = "sleep", seconds = 30}]

[[agent]]
name = "carol"
"""

Make = Callable[..., DashboardHive]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    return make_dashboard(CONFIG)


def turn_ids(page: Any) -> list[int]:
    ids: list[int] = page.eval_on_selector_all(
        "#turns details.turn", "ds => ds.map(d => Number(d.dataset.id))"
    )
    return ids


def test_turn_history_pages_back_to_the_first_turn(dash: DashboardHive) -> None:
    for i in range(65):  # 65 turns: three pages of 30
        dash.hive.admin("kick", names=["carol"], note=f"kick {i}")
        wait_until(
            lambda n=i: len([t for t in dash.hive.turns("carol") if t["ended_at"]]) > n,
            what=f"turn {i + 1}",
        )
    all_ids = sorted(t["id"] for t in dash.hive.turns("carol"))
    assert len(all_ids) == 65
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/carol")
        page.wait_for_function(
            "() => document.querySelectorAll('#turns details.turn').length === 30"
        )
        assert page.is_visible("#older-turns") and not page.is_visible("#turns-end")
        page.click("#older-turns")
        page.wait_for_function(
            "() => document.querySelectorAll('#turns details.turn').length === 60"
        )
        page.click("#older-turns")
        page.wait_for_selector("#turns-end:not([hidden])")
        assert sorted(turn_ids(page)) == all_ids
        assert turn_ids(page) == sorted(all_ids, reverse=True)  # newest first, no gaps
        assert page.is_hidden("#older-turns")


def test_running_turn_elapsed_inbox_fold_and_jump(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        dash.ok("POST", "/api/agents/bob/messages", json={"body": "slow"})
        chip = page.locator("#agent-elapsed")
        chip.wait_for()
        first = chip.inner_text()
        page.wait_for_function(
            f"() => document.getElementById('agent-elapsed').textContent !== {first!r}"
        )  # it ticks
        summary = page.locator("#turns details.turn summary").first
        assert "running " in summary.inner_text()
        screenshot(page, "agent-running")
        dash.ok("POST", "/api/agents/bob/cancel", json={})
        page.wait_for_selector("#agent-elapsed", state="hidden")
        # The inbox folds, and stays folded over a reload.
        page.click("#inbox-panel summary")
        page.wait_for_selector("#inbox-panel:not([open])")
        page.reload()
        page.wait_for_selector("#live[data-state=up]")
        assert page.get_attribute("#inbox-panel", "open") is None
        page.select_option("#jump-agent", "carol")
        page.wait_for_url(f"{dash.url}/agents/carol")


def test_model_command_takes_known_models_or_force_and_never_sends_a_typo(
    dash: DashboardHive,
) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        options = page.eval_on_selector_all("#model-picker option", "os => os.map(o => o.value)")
        assert options[1:] == ["claude-sonnet-4-5", "claude-haiku-4-5"]

        def command(text: str) -> str:
            page.fill("#send-body", text)
            page.click("#send-button")
            page.wait_for_function(
                "() => document.getElementById('send-result').textContent !== ''"
            )
            result: str = page.inner_text("#send-result")
            page.evaluate("() => { document.getElementById('send-result').textContent = ''; }")
            return result

        for typo in ("/modle claude-haiku-4-5", "/model claude-hiaku-4-5", "/model a b c"):
            said = command(typo)
            assert "not a command" in said or "unknown model" in said, said
            assert page.input_value("#send-body") == typo  # kept to fix, not sent
        assert "claude-sonnet-4-5, claude-haiku-4-5" in command("/model claude-hiaku-4-5")
        assert command("/model claude-haiku-4-5") == "model set to claude-haiku-4-5"
        assert page.input_value("#send-body") == ""
        assert command("/model claude-experimental --force") == "model set to claude-experimental"
        wait_until(lambda: dash.row("bob")["active_model"] == "claude-experimental", what="forced")
        assert command("//model is a word") == "sent #1" or "sent #" in page.inner_text(
            "#send-result"
        )
        [sent] = dash.ok("GET", "/api/agents/bob/messages")["messages"][-1:]
        assert sent["body"] == "/model is a word"


def test_the_model_verb_refuses_an_unknown_model_unless_forced(dash: DashboardHive) -> None:
    r = dash.api("POST", "/api/model", json={"agent": "bob", "model": "claude-nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_model"
    assert "[hive] models" in r.json()["error"]["message"]
    assert dash.row("bob")["active_model"] == "claude-sonnet-4-5"  # unchanged
    cli = hivectl(dash.hive, "model", "bob", "claude-nope", json_out=False)
    assert cli.returncode != 0 and "claude-nope" in cli.stderr
    assert hivectl(dash.hive, "model", "bob", "claude-nope", "--force").returncode == 0
    assert dash.row("bob")["active_model"] == "claude-nope"
    page = dash.ok("GET", "/api/agents/bob/turns", params={"limit": 5, "before": 1})
    assert page == {"turns": []}
    assert dash.api("GET", "/api/agents/bob/turns", params={"before": "x"}).status_code == 400


def test_charts_resize_share_one_cursor_and_draw_gauges_as_steps(dash: DashboardHive) -> None:
    for i in range(3):
        dash.ok("POST", "/api/agents/bob/messages", json={"body": f"ping {i}"})
        wait_until(lambda: dash.row("bob")["inbox_depth"] == 0, what="bob to answer")
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector('[data-chart="duration"] canvas')
        page.wait_for_function("() => window.hiveCharts.size === 9")

        def width(chart: str) -> int:
            value: int = page.evaluate(f"() => window.hiveCharts.get('{chart}').width")
            return value

        before = width("duration")
        # 700 px: one column of charts instead of three; each chart takes its new width.
        page.set_viewport_size({"width": 700, "height": 1000})
        fits = """(id) => { const c = window.hiveCharts.get(id);
                 return c.width === Math.max(220, c.root.parentElement.clientWidth - 8); }"""
        page.wait_for_function(f"() => ({fits})('duration') && ({fits})('depth')")
        assert width("duration") != before
        steps = page.evaluate(
            """() => ['depth', 'approvals', 'notes', 'duration'].map(
                 id => window.hiveCharts.get(id).series[1].stepped)"""
        )
        assert steps == [True, True, True, False]  # gauges are steps, measures are lines
        # Hovering one chart moves the cursor of the others.
        over = page.locator('[data-chart="duration"] .u-over')
        over.scroll_into_view_if_needed()
        box = over.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("() => window.hiveCharts.get('tools').cursor.left > 0")
