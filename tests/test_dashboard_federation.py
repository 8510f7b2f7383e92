"""The dashboard of a federated hive (issue 13, items 2 and 4), in Chromium, with two real
hives on a real nats-server: the overview shows the other hive's agents with their hive
and every link's health, filters and sorts by hive (this hive's agents first), pauses a
remote agent (its hive's state changes), sends to bob@beta from the send box (it arrives
in beta's store), and shows unknown_hive and not_authorized as the action's outcome. A
hive without [federation] shows no hive column and no links, and refuses bob@beta."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.federation_support import alpha_and_beta, nats, received
from tests.nats_harness import NatsServer
from tests.test_a11y import (
    DESKTOP,
    PHONE,
    axe_script,
    logged_in,
    no_sideways_scroll,
    serious_violations,
)
from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard", "nats"]

Make = Callable[..., DashboardHive]


def _visible(page: Any) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "#agent-rows tr:not([hidden])", "rows => rows.map(r => r.dataset.agent)"
    )
    return names


def _row(page: Any, agent: str, selector: str) -> str:
    text: str = page.locator(f'tr[data-agent="{agent}"] {selector}').inner_text()
    return text


def test_remote_agents_links_pause_and_send_from_the_overview(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    with alpha.browser() as page:
        page.wait_for_selector('tr[data-agent="bob@beta"]', timeout=30_000)
        assert _row(page, "bob@beta", ".hive-col") == "beta"
        assert _row(page, "alice", ".hive-col") == "alpha"
        assert page.locator('tr[data-agent="bob@beta"] a').count() == 0  # no local page
        assert page.locator('tr[data-agent="bob@beta"] button[data-op=cancel]').count() == 0
        # Every link's health: connected, a measured round trip, outbox and lag.
        page.wait_for_selector('#link-rows tr[data-hive="beta"] td.rtt:has-text("ms")')
        assert _row_text(page, "beta", ".connected") == "yes"
        assert _row_text(page, "alpha", ".outbox") == "0"
        assert _row_text(page, "beta", ".lag") == "0"
        # Sort and filter by hive: this hive's agents first.
        page.select_option("#fleet-sort", "hive")
        assert _visible(page) == ["alice", "bob@beta"]
        page.select_option("#fleet-hive", "beta")
        assert _visible(page) == ["bob@beta"]
        page.select_option("#fleet-hive", "")
        page.fill("#fleet-filter", "beta")
        assert _visible(page) == ["bob@beta"]
        page.fill("#fleet-filter", "")

        # Pause on the remote row: beta runs it; the row follows beta's state.
        page.click('tr[data-agent="bob@beta"] button[data-op=pause]')
        page.wait_for_selector('tr[data-agent="bob@beta"] .outcome:text-is("paused")')
        assert beta.row("bob")["paused"] is True
        page.wait_for_selector('tr[data-agent="bob@beta"] button[data-op=resume]')
        screenshot(page, "fleet-federated")
        page.click('tr[data-agent="bob@beta"] button[data-op=resume]')
        page.wait_for_selector('tr[data-agent="bob@beta"] .outcome:text-is("resumed")')
        assert beta.row("bob")["paused"] is False

        # The send box takes bob@beta; the message lands in beta's store.
        page.click("#send-box summary")
        page.fill("#send-to", "bob@beta")
        page.fill("#send-text", "hello from alpha's dashboard")
        page.click("#overview-send button[type=submit]")
        page.wait_for_selector('#send-outcome:has-text("sent to bob@beta")')
        wait_until(
            lambda: [r for r in received(beta.hive, "alpha") if r[2] == "bob"],
            what="the message in beta's store",
        )
        [(_, sender, _, body)] = received(beta.hive, "alpha")
        assert (sender, body) == ("operator@alpha", "hello from alpha's dashboard")

        # A hive that does not exist: a clear error in the send box, nothing sent.
        page.fill("#send-to", "x@delta")
        page.fill("#send-text", "lost?")
        page.click("#overview-send button[type=submit]")
        page.wait_for_selector("#send-outcome:has-text(\"no hive named 'delta'\")")
        assert "unknown_hive" in page.inner_text("#send-outcome")
        assert page.input_value("#send-text") == "lost?"  # kept, to fix the address


def _row_text(page: Any, hive: str, selector: str) -> str:
    text: str = page.locator(f'#link-rows tr[data-hive="{hive}"] {selector}').inner_text()
    return text


def test_a_refused_remote_action_shows_as_its_outcome(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)  # alpha takes no operator requests from beta
    with beta.browser() as page:
        page.wait_for_selector('tr[data-agent="alice@alpha"]', timeout=30_000)
        page.click('tr[data-agent="alice@alpha"] button[data-op=pause]')
        outcome = page.locator('tr[data-agent="alice@alpha"] .outcome.error')
        outcome.wait_for()
        assert "does not take operator requests from hive 'beta'" in outcome.inner_text()
        assert alpha.row("alice")["paused"] is False
        # alpha goes away: its row stays (its last fleet row), the link says so, and an
        # action on it says that alpha does not answer.
        alpha.hive.terminate()
        page.wait_for_selector('#link-rows tr[data-hive="alpha"] td.down:text-is("no news")',
                               timeout=30_000)  # fmt: skip
        page.click('tr[data-agent="alice@alpha"] button[data-op=kick]')
        page.wait_for_selector(
            'tr[data-agent="alice@alpha"] .outcome.error:has-text("does not answer")'
        )


def test_remote_names_through_the_api_fail_clearly(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    wait_until(
        lambda: {h["hive"] for h in alpha.ok("GET", "/api/fleet")["hives"]} >= {"alpha", "beta"},
        what="beta in alpha's fleet view",
    )
    cases = [
        ("/api/agents/bob@Beta/pause", {}, 400, "invalid_name"),
        ("/api/agents/bob@beta/cancel", {}, 400, "not_remote"),
        ("/api/agents/x@delta/pause", {}, 404, "unknown_hive"),
        ("/api/agents/nobody@beta/pause", {}, 404, "unknown_agent"),
        ("/api/agents/x@delta/messages", {"body": "hi"}, 404, "unknown_hive"),
        ("/api/agents/bob@beta/messages", {"body": "  "}, 400, "bad_request"),
    ]
    for path, body, status, code in cases:
        r = alpha.api("POST", path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, r.text)
    assert received(beta.hive, "alpha") == []
    kicked = alpha.ok("POST", "/api/agents/bob@beta/kick", json={"note": "from alpha"})
    assert "error" not in kicked
    alpha.ok("POST", "/api/agents/alice@alpha/pause", json={})  # this hive's own name: local
    assert alpha.row("alice")["paused"] is True


def test_without_federation_nothing_changes(make_dashboard: Make) -> None:
    dash = make_dashboard('[[agent]]\nname = "bob"\n')
    assert dash.ok("GET", "/api/fleet") == {"hive": None, "hives": []}
    r = dash.api("POST", "/api/agents/bob@beta/messages", json={"body": "hi"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "not_federated")
    with dash.browser() as page:
        page.wait_for_selector('tr[data-agent="bob"]')
        assert not page.locator("th.hive-col").is_visible()
        assert not page.locator('tr[data-agent="bob"] td.hive-col').is_visible()
        assert page.locator("#links-panel").is_hidden()
        assert page.locator("#fleet-hive").is_hidden()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_federated_overview_is_axe_clean_and_fits(
    nats: Callable[..., NatsServer], make_dashboard: Make, viewport: dict[str, int]
) -> None:
    source = axe_script()
    alpha, _beta = alpha_and_beta(nats, make_dashboard)
    with logged_in(alpha, viewport) as page:
        page.goto(alpha.url)
        page.wait_for_selector('tr[data-agent="bob@beta"]', timeout=30_000)
        page.wait_for_selector('#link-rows tr[data-hive="beta"]')
        page.click("#send-box summary")
        page.fill("#send-to", "x@delta")
        page.fill("#send-text", "hi")
        page.click("#overview-send button[type=submit]")
        page.wait_for_selector("#send-outcome.error")
        no_sideways_scroll(page, viewport["width"])
        found = serious_violations(page, source)
        screenshot(page, f"a11y-federated-{viewport['width']}")
    assert not found, json.dumps(found, indent=1)
