"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) on a
real supervisor with scripted agents. Screenshots land in test-artifacts/ for the record."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hive_harness import trio_idle_timeout
from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard"]

CONFIG = """
[hive]
backoff_initial = 0.2
# These scripted agents run in the process sandbox, and the dashboard (the operator, not
# root) approves their spawns and opens their terminal: this hive allows it to.
operator_sandboxes = ["process", "bwrap"]

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "ping"
do = [{op = "set_status", text = "answering {from} #{count}"},
      {op = "reply", body = "pong ({body})"}]

[[agent.script]]
match = "boom"
do = [{op = "crash", code = 3, message = "exploded on purpose"}]

[[agent]]
name = "carol"
parent = "bob"

[[agent]]
name = "slow"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "sleep", seconds = 60}]
"""

Make = Callable[..., DashboardHive]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    return make_dashboard(CONFIG)


def row_text(page: Any, agent: str, cell: str) -> str:
    text: str = page.locator(f'tr[data-agent="{agent}"] {cell}').inner_text()
    return text


def test_overview_shows_the_tree_and_live_rows(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector('tr[data-agent="carol"]')
        order = page.eval_on_selector_all(
            "#agent-rows tr", "rows => rows.map(r => r.dataset.agent)"
        )
        assert order == ["manager", "bob", "carol", "slow"]  # depth-first by parent
        assert row_text(page, "bob", ".badge") == "idle"
        assert row_text(page, "bob", ".model") == "claude-sonnet-4-5"
        assert row_text(page, "bob", ".turn") == "no turn yet"
        page.wait_for_selector("#live[data-state=up]")
        # An agent's reply reaches the page without a reload: the row and the
        # notification row change in place.
        dash.ok("POST", "/api/agents/bob/messages", json={"body": "ping from the test"})
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .status')
                   .textContent.startsWith('answering operator')"""
        )
        page.wait_for_selector("#notification-list li:has-text('pong (ping from the test)')")
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .turn')
                   .textContent.endsWith(' ok')"""
        )
        screenshot(page, "overview")


def test_agent_page_shows_a_message_without_reload(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        marker = page.evaluate("() => (window.loadedAt = Date.now())")
        dash.hive.admin("pause", names=["carol"])
        with dash.hive.agent("carol") as carol:  # carol (played by the test) writes to bob
            carol.call("send", to="bob", body="ping from carol")
        page.wait_for_selector("#inbox tr:has-text('ping from carol')")
        page.wait_for_selector("#inbox tr:has-text('pong (ping from carol)')")
        page.wait_for_selector("#turns details.turn.exit-ok")
        page.locator("#turns details.turn summary").first.click()
        page.wait_for_selector("#turns .ev.call:has-text('send')")
        assert page.evaluate("() => window.loadedAt") == marker  # still the same page
        screenshot(page, "agent-page")


def test_pause_kick_and_cancel_from_the_page(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector('tr[data-agent="bob"]')
        page.click('tr[data-agent="bob"] button[data-op="pause"]')
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .badge')
                   .textContent === 'paused'"""
        )
        assert dash.row("bob")["paused"] is True
        page.click('tr[data-agent="bob"] button[data-op="resume"]')
        wait_until(lambda: dash.row("bob")["paused"] is False, what="resume")

        page.click('tr[data-agent="bob"] button[data-op="kick"]')
        wait_until(lambda: dash.row("bob")["last_turn"], what="the kicked turn")
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .turn')
                   .textContent.includes('ok')"""
        )

        dash.ok("POST", "/api/agents/slow/messages", json={"body": "a long job"})
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="slow"] .badge')
                   .textContent === 'running'"""
        )
        cancel = page.locator('tr[data-agent="slow"] button[data-op="cancel"]')
        cancel.click()  # destructive: the first click only arms it
        assert "really" in cancel.inner_text()
        time.sleep(0.5)
        assert dash.row("slow")["last_turn"] is None
        screenshot(page, "cancel-armed")
        cancel.click()
        last = wait_until(lambda: dash.row("slow")["last_turn"], what="the cancelled turn")
        assert last["exit_class"] == "cancelled"
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="slow"] .turn')
                   .textContent.includes('cancelled')"""
        )


def test_focus_and_half_typed_text_survive_live_updates(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        box = page.locator("#send-body")
        box.click()
        page.keyboard.type("half an ans")
        page.evaluate("() => document.getElementById('send-body').setSelectionRange(4, 7)")
        page.evaluate("() => window.scrollTo(0, 120)")
        where = "() => document.getElementById('send-body').getBoundingClientRect().top"
        top = page.evaluate(where)
        for i in range(20):
            dash.ok("POST", "/api/agents/bob/messages", json={"body": f"ping {i}"})
        page.wait_for_function(
            "() => document.querySelectorAll('#inbox tr').length >= 40", timeout=60_000
        )
        page.wait_for_function(
            """() => document.getElementById('agent-status').textContent
                   .startsWith('answering operator')"""
        )
        state = page.evaluate(
            """() => { const b = document.getElementById('send-body');
                 return {focused: document.activeElement === b, value: b.value,
                         start: b.selectionStart, end: b.selectionEnd}; }"""
        )
        assert state == {"focused": True, "value": "half an ans", "start": 4, "end": 7}
        # The page did not jump: the box is where the operator left it on the screen
        # (the browser's scroll anchoring absorbs rows growing above it).
        assert abs(page.evaluate(where) - top) < 2
        page.keyboard.type("wer")  # typing goes on where it was
        assert box.input_value() == "halfwer ans"
        screenshot(page, "focus-kept")


def test_the_stats_chart_draws(dash: DashboardHive) -> None:
    for i in range(4):
        dash.ok("POST", "/api/agents/bob/messages", json={"body": f"ping {i}"})
        wait_until(lambda: dash.row("bob")["inbox_depth"] == 0, what="bob to answer")
    wait_until(
        lambda: dash.ok("GET", "/api/stats?agent=bob&keys=turn.duration")["series"],
        what="stats rows",
    )
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector('[data-chart="duration"] canvas')
        drawn = page.evaluate(
            """() => { const c = document.querySelector('[data-chart="duration"] canvas');
                 const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let colored = 0;
                 for (let i = 0; i < px.length; i += 4) {
                   // the series stroke (#2f6fdf): blue-ish, not grey axes
                   if (px[i + 3] > 0 && px[i + 2] > 150 && px[i] < 120) colored++;
                 }
                 return colored; }"""
        )
        assert drawn > 20
        assert page.locator(".uplot").count() == 9  # 8 telemetry charts and cost per day
        assert "turns" in page.locator("#stats-summary").inner_text()
        page.locator("#charts").scroll_into_view_if_needed()
        screenshot(page, "stats")


def test_terminal_echoes_a_command(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.click("#terminal-open")
        page.wait_for_function("() => window.hiveTerminal !== undefined")
        page.wait_for_function(
            """() => { const b = window.hiveTerminal.buffer.active; let t = '';
                 for (let i = 0; i < b.length; i++) t += b.getLine(i).translateToString();
                 return t.includes('bob:'); }""",
            timeout=20_000,
        )
        page.keyboard.type("echo hive-$((6*7)) && pwd\n")
        page.wait_for_function(
            # A long path wraps: join wrapped rows back into their logical line.
            """() => { const b = window.hiveTerminal.buffer.active; let t = '';
                 for (let i = 0; i < b.length; i++) {
                   const l = b.getLine(i);
                   t += (l.isWrapped ? '' : '\\n') + l.translateToString(true);
                 }
                 return t.includes('hive-42') && t.includes('/agents/bob/work'); }""",
            timeout=20_000,
        )
        page.locator("#terminal").scroll_into_view_if_needed()
        screenshot(page, "terminal")
        assert shells(dash)  # the shell runs while the page holds the terminal
    # Closing the page hangs the shell up: nothing is left running.
    wait_until(lambda: not shells(dash), what="the terminal's shell to exit")


def shells(dash: DashboardHive) -> list[Any]:
    import psutil

    children = psutil.Process(dash.hive.process.pid).children(recursive=True)
    return [p for p in children if p.name() in ("bash", "setsid", "sh")]


def test_forged_posts_are_refused(dash: DashboardHive) -> None:
    with dash.browser() as page:
        # From the logged-in page itself, but without the CSRF token:
        status = page.evaluate(
            """async () => (await fetch('/api/agents/bob/pause', {method: 'POST',
                 credentials: 'same-origin'})).status"""
        )
        assert status == 403
        # From another site: a form that posts to the dashboard (the browser would attach
        # the cookie if it were not SameSite=Strict; the CSRF token is missing either way).
        page.set_content(
            f"""<form id=f method=post action="{dash.url}/api/agents/bob/pause">
                <input name=paused value=1></form>"""
        )
        with page.expect_navigation():
            page.evaluate("() => document.getElementById('f').submit()")
        assert "error" in page.content()
        # A cross-site websocket to the terminal is refused too.
        refused = page.evaluate(
            f"""() => new Promise(done => {{
                 const ws = new WebSocket('ws://127.0.0.1:{dash.port}/api/agents/bob/terminal');
                 ws.onopen = () => done('opened'); ws.onerror = () => done('refused'); }})"""
        )
        assert refused == "refused"
    assert dash.row("bob")["paused"] is False


def test_reconnects_after_a_drop_with_a_fresh_snapshot(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        assert row_text(page, "bob", ".badge") == "idle"
        dash.hive = dash.hive.restart()  # the stream drops; the same port comes back
        dash.hive.admin("pause", names=["bob"])  # a change the page never saw as an update
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .badge')
                   .textContent === 'paused'""",
            timeout=30_000,
        )
        page.wait_for_selector("#live[data-state=up]")


def ask_in_background(dash: DashboardHive, agent: str, **args: Any) -> dict[str, Any]:
    """An agent's ask_operator, held in a thread until the operator resolves it."""
    box: dict[str, Any] = {}

    def run() -> None:
        with dash.hive.agent(agent, timeout=120) as c:
            box["result"] = c.call("ask_operator", **args)

    box["thread"] = threading.Thread(target=run, daemon=True)
    box["thread"].start()
    return box


def test_approve_from_the_page_spawns_the_agent(dash: DashboardHive) -> None:
    if not dash.ok("GET", "/api/session")["features"]["approvals"]:
        pytest.fail("the control plane (approve verb) is not in this hive")
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        with dash.hive.agent("manager") as manager:
            request = manager.call("request_spawn", name="scout")
        card = page.locator(f'#approvals article[data-key="{request["id"]}"]')
        card.wait_for()
        assert "spawn" in card.inner_text() and "requested by manager" in card.inner_text()
        assert page.locator("#approvals-count").inner_text() == "1"
        screenshot(page, "approval")
        approve = card.locator("button", has_text="approve")
        approve.click()  # arms
        time.sleep(0.3)
        assert dash.ok("GET", "/api/approvals")["approvals"]  # nothing happened yet
        approve.click()
        page.wait_for_selector('tr[data-agent="scout"]', timeout=30_000)
        assert dash.row("scout")["parent"] == "manager"
        page.wait_for_function("() => !document.querySelector('#approvals article')")


def test_a_question_answered_from_the_page_reaches_the_agent(dash: DashboardHive) -> None:
    if not dash.ok("GET", "/api/session")["features"]["questions"]:
        pytest.fail("the control plane (answer verb) is not in this hive")
    dash.hive.admin("pause", names=["carol"])
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        asked = ask_in_background(
            dash, "carol", question="Deploy to prod?", options=["yes", "no"], ttl_seconds=600
        )
        card = page.locator("#questions article")
        card.wait_for()
        assert "Deploy to prod?" in card.inner_text()
        page.wait_for_function(
            "() => /\\d+:\\d\\d left/.test(document.querySelector('#questions .ttl').textContent)"
        )
        answer = card.locator("input.answer")
        answer.click()
        page.keyboard.type("yes, after")
        # 20 live updates of the rows around it, and the TTL ticking meanwhile
        for i in range(20):
            dash.ok("POST", "/api/agents/bob/messages", json={"body": f"ping {i}"})
        page.wait_for_function(
            """() => document.querySelector('tr[data-agent="bob"] .status')
                   .textContent === 'answering operator #20'""",
            timeout=60_000,
        )
        focused = page.evaluate(
            "() => document.activeElement === document.querySelector('#questions input.answer')"
        )
        assert focused and answer.input_value() == "yes, after"
        page.keyboard.type(" 18:00")
        screenshot(page, "question")
        card.locator("button", has_text="answer").click()
        asked["thread"].join(timeout=30)
        assert asked["result"]["status"] == "answered"
        assert asked["result"]["answer"] == "yes, after 18:00"
        page.wait_for_function("() => !document.querySelector('#questions article')")


def test_model_slash_command_sets_the_model(dash: DashboardHive) -> None:
    if not dash.ok("GET", "/api/session")["features"]["set_model"]:
        pytest.fail("the control plane (model verb) is not in this hive")
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        # Hold the response to the command until the stream has shown the new model: the
        # order a loaded machine can produce, here every time.
        held: list[Any] = []
        page.route("**/api/model", lambda route: held.append((route, route.fetch())))
        page.fill("#send-body", "/model claude-opus-4-5")
        page.click("#send-button")
        page.wait_for_function(
            "() => document.getElementById('agent-model').textContent === 'claude-opus-4-5'"
        )
        assert page.input_value("#send-body") == ""  # a command, not a message
        # The route handler runs while Playwright pumps events: poll (bounded) until it
        # holds the response; the stream may well have shown the model before that.
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        [(route, response)] = held
        route.fulfill(response=response)
        page.unroute("**/api/model")
        page.wait_for_function(
            "() => document.getElementById('send-result').textContent.includes('model set to')"
        )
        assert page.input_value("#send-body") == ""
        assert dash.ok("GET", "/api/agents/bob/messages")["messages"] == []
        assert dash.row("bob")["active_model"] == "claude-opus-4-5"
        page.select_option("#model-picker", "claude-haiku-4-5")
        wait_until(lambda: dash.row("bob")["active_model"] == "claude-haiku-4-5", what="picker")


def test_log_viewer_shows_and_follows_the_agent_log(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        assert page.locator("#log-source").inner_text() in ("(agent.log)", "(journald)")
        page.check("#log-follow")  # following starts after the page's last line: no gap
        dash.ok("POST", "/api/agents/bob/messages", json={"body": "boom"})
        page.wait_for_selector("#log:has-text('exploded on purpose')", timeout=20_000)
        dash.ok("POST", "/api/agents/bob/pause")
        page.reload()  # and without follow, the last lines are there after a reload
        page.wait_for_selector("#log:has-text('exploded on purpose')")
        page.locator("#log").scroll_into_view_if_needed()
        screenshot(page, "log")


def test_state_badges_cover_every_state(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        badges = page.evaluate(
            """() => [
                 {failed: true, paused: true}, {needs_login: true}, {needs_update: true},
                 {paused: true}, {stopped: true}, {turn_state: 'thinking'},
                 {turn_state: 'waiting_recv'},
                 {turn_state: 'waiting_operator'}, {turn_state: 'tool'},
                 {turn_state: 'starting'}, {turn_state: 'idle'},
               ].map(row => Hive.badge(row).text)"""
        )
        assert badges == [
            "failed", "needs login", "needs update", "paused", "stopped", "thinking", "waiting",
            "waiting for operator", "running", "running", "idle",
        ]  # fmt: skip


def test_draft_commit_diff_and_approval_on_the_page(dash: DashboardHive) -> None:
    if not dash.ok("GET", "/api/session")["features"]["approvals"]:
        pytest.fail("the control plane is not in this hive")
    from tests.control_support import git

    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        with dash.hive.agent("manager") as manager:
            draft = manager.call("request_spawn_draft", name="helper")
        page.wait_for_selector("#drafts article:has-text('helper')")
        assert page.locator("#drafts-panel").is_visible()
        repo = Path(draft["config_dir"])
        toml = repo / "agent.toml"
        toml.write_text(toml.read_text() + 'model = "claude-haiku-4-5"\n')
        git(repo, "commit", "-qam", "helper runs on haiku")
        with dash.hive.agent("manager") as manager:
            request = manager.call("request_spawn_commit", name="helper", ref="HEAD")
        card = page.locator(f'#approvals article[data-key="{request["id"]}"]')
        card.wait_for()
        assert '+model = "claude-haiku-4-5"' in card.locator("pre.diff").inner_text()
        screenshot(page, "approval-diff")
        deny = card.locator("button", has_text="deny")
        deny.click()
        deny.click()
        page.wait_for_function("() => !document.querySelector('#approvals article')")
        rows = dash.ok("GET", "/api/agents")["agents"]
        assert "helper" not in [r["name"] for r in rows]


BOXED = """
[hive]
agent_python = "/usr/bin/python3"  # the venv's is under /root, closed to the agent's uid

[[agent]]
name = "boxed"
sandbox = "bwrap"
"""


def test_terminal_runs_inside_the_agents_sandbox(make_dashboard: Make) -> None:
    from hive.sandboxes import bwrap_usable

    if not bwrap_usable():
        pytest.fail("bubblewrap cannot run here")
    # The agent's own uid must be able to reach its dirs (pytest's tmp dirs are 0700).
    root = Path(tempfile.mkdtemp(prefix="hive-ui-boxed-"))
    os.chmod(root, 0o711)
    try:
        check_boxed_terminal(make_dashboard(BOXED, root=root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_boxed_terminal(dash: DashboardHive) -> None:
    db = dash.hive.state_dir.resolve() / "hive.db"
    assert db.exists()
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/boxed")
        output = page.evaluate(
            """async ([csrf, db, holdMs]) => {
                 const ws = new WebSocket(
                   `ws://${location.host}/api/agents/boxed/terminal?csrf=${csrf}`);
                 ws.binaryType = 'arraybuffer';
                 let out = '';
                 ws.onmessage = (ev) => {
                   out += typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
                 };
                 await new Promise((ok) => { ws.onopen = ok; });
                 ws.send(JSON.stringify({t: 'i', d: `ls ${db}; pwd; echo END-$((2*21))\\r`}));
                 for (let i = 0; i < 200 && !out.includes('END-42'); i++) {
                   await new Promise((ok) => setTimeout(ok, 100));
                 }
                 // Item 10: a bwrap shell died once trio's idle worker threads exited.
                 await new Promise((ok) => setTimeout(ok, holdMs));
                 ws.send(JSON.stringify({t: 'i', d: `echo ALIVE-$((6*7))\\r`}));
                 for (let i = 0; i < 200 && !out.includes('ALIVE-42'); i++) {
                   await new Promise((ok) => setTimeout(ok, 100));
                 }
                 ws.close();
                 return out;
               }""",
            [dash.csrf, str(db), (trio_idle_timeout() + 3) * 1000],
        )
    assert "END-42" in output
    assert "ALIVE-42" in output, "the shell did not outlive trio's idle worker threads"
    assert "No such file or directory" in output  # the hive's database is not in the box
    assert "/agents/boxed/work" in output
