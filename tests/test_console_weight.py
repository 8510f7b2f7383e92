"""Weight and session hygiene (issue 14, item 7), on a real hive in Chromium: compressed
responses (never the live streams), xterm.js fetched only when the terminal opens, an agent
page that re-reads only what changed, and a logout or a changed token sending every tab
to the login page, which brings each back to its page."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.ui_harness import DashboardHive, make_dashboard, screenshot

__all__ = ["make_dashboard"]

CONFIG = """
[[agent]]
name = "bob"
[[agent.script]]
match = "*"
do = [{op = "reply", body = "pong"}]

[[agent]]
name = "carol"
[[agent.script]]
match = "*"
do = [{op = "set_status", text = "busy {count}"}]
"""

Make = Callable[..., DashboardHive]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    return make_dashboard(CONFIG)


def test_text_is_gzipped_when_asked_and_streams_never_are(dash: DashboardHive) -> None:
    with dash.client() as c:
        plain = c.get("/static/agent.js", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        raw = c.get("/static/agent.js", headers={"Accept-Encoding": "gzip"})
        # httpx decodes: compare the wire length and the decoded text
        assert raw.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in raw.headers["vary"]
        assert int(raw.headers["content-length"]) < len(plain.content) / 2
        assert raw.content == plain.content
        page = c.get("/agents/bob", headers={"Accept-Encoding": "gzip, br"})
        assert page.headers["content-encoding"] == "gzip" and "agent.js" in page.text
        with c.stream(
            "GET", "/api/stream?kinds=agent", headers={"Accept-Encoding": "gzip"}
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers
    # Bytes as sent: a gzip stream that decompresses to the file.
    with httpx.Client(base_url=dash.url) as bare:
        r = bare.get("/static/hive.js", headers={"Accept-Encoding": "gzip"})
        with bare.stream("GET", "/static/hive.js", headers={"Accept-Encoding": "gzip"}) as s:
            wire = b"".join(s.iter_raw())
    assert gzip.decompress(wire) == r.content


def loaded_scripts(page: Any) -> list[str]:
    names: list[str] = page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
    )
    return names


def test_xterm_is_fetched_only_when_the_terminal_opens(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        assert not [n for n in loaded_scripts(page) if "xterm" in n or "addon-fit" in n]
        page.click("#terminal-open")
        page.wait_for_selector("#terminal .xterm")
        fetched = loaded_scripts(page)
        assert "/vendor/xterm.js" in fetched and "/vendor/addon-fit.js" in fetched
        page.wait_for_function("() => window.hiveTerminal !== undefined")


def test_the_agent_page_rereads_only_what_changed(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        page.wait_for_selector("#live[data-state=up]")
        page.wait_for_load_state("networkidle")
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url.split(dash.url, 1)[-1]))
        # Another agent's work: rows and turns of carol reach this page's stream ...
        for i in range(5):
            dash.ok("POST", "/api/agents/carol/messages", json={"body": f"work {i}"})
        page.wait_for_function(
            "() => document.getElementById('attention-count').textContent !== ''"
        )
        page.evaluate(
            """() => new Promise((done) => {
                 const check = () => fetch('/api/agents/carol').then(r => r.json())
                   .then(row => row.status_text === 'busy 5' ? done() : setTimeout(check, 50));
                 check(); })"""
        )
        # ... and this page asked for nothing about bob because of them.
        bob_reads = [u for u in fetched if u.startswith("/api/agents/bob") or "/api/stats" in u]
        assert bob_reads == [], bob_reads
        # bob's own news: its message arrives live, and its stats are re-read after the turn.
        with page.expect_request(lambda r: "/api/stats?agent=bob" in r.url, timeout=30_000):
            dash.ok("POST", "/api/agents/bob/messages", json={"body": "ping"})
        page.wait_for_selector("#inbox tr:has-text('pong')")


def test_logout_sends_every_tab_to_login_and_back(dash: DashboardHive) -> None:
    with dash.browser() as page:
        other = page.context.new_page()
        other.goto(f"{dash.url}/agents/bob")
        other.wait_for_selector("#live[data-state=up]")
        page.wait_for_selector("#live[data-state=up]")
        page.click("form.logout button")
        page.wait_for_url(f"{dash.url}/login")
        other.wait_for_url(f"{dash.url}/login?next=%2Fagents%2Fbob")
        screenshot(other, "logged-out-tab")
        page.fill("#token", dash.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dash.url}/")
        other.wait_for_url(f"{dash.url}/agents/bob")  # back where it was
        other.wait_for_selector("#live[data-state=up]")


def test_a_changed_token_sends_open_tabs_to_login(dash: DashboardHive) -> None:
    with dash.browser() as page:
        page.goto(f"{dash.url}/inbox")
        page.wait_for_selector("#live[data-state=up]")
        old = dash.token
        (dash.hive.state_dir / "operator-token").unlink()
        dash.hive = dash.hive.restart()  # a new token is made at start
        page.wait_for_url(f"{dash.url}/login?next=%2Finbox", timeout=60_000)
        assert dash.token != old
        page.fill("#token", dash.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dash.url}/inbox")
