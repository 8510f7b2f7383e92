"""The attention inbox (issue 14, item 1): items derived from what happens in a real hive,
kept in the store, the same through the API, hivectl and two Chromium tabs; a failure
stays on top of a flood of 200 routine mails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw
import pytest

from hive import attention
from hive.store import Queries
from hive.store.database import migrate
from tests.control_support import hivectl
from tests.ui_harness import CHROMIUM, DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard"]

CONFIG = """
[hive]
backoff_initial = 0.1
restart_intensity = 2
restart_period = 60

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "boom"
do = [{op = "crash", code = 3, message = "exploded on purpose"}]

[[agent]]
name = "carol"
parent = "manager"
"""

Make = Callable[..., DashboardHive]


def memory_queries() -> Queries:
    conn = apsw.Connection(":memory:")
    migrate(conn)
    return Queries(conn)


# --- the rules, on a real (in-memory) SQLite --------------------------------------------


def test_a_repeat_bumps_the_open_item_and_makes_it_new_again() -> None:
    q = memory_queries()
    crash = {"kind": "event", "data": {"agent": "bob", "kind": "crash", "detail": "exit 3"}}
    [first] = attention.apply(q, attention.derive(crash), now=1.0)
    attention.mark(q, "seen", [first["id"]], attention.Filter())
    [again] = attention.apply(q, attention.derive(crash), now=2.0)
    assert again["id"] == first["id"] and again["count"] == 2 and again["state"] == "new"
    attention.mark(q, "done", [first["id"]], attention.Filter())
    [third] = attention.apply(q, attention.derive(crash), now=3.0)
    assert third["id"] != first["id"] and third["count"] == 1  # done is done: a new item


def test_failures_outrank_mail_and_approvals_settle() -> None:
    q = memory_queries()
    for i in range(300):
        mail = {"id": i, "from": "carol", "to": "operator", "body": f"routine {i}"}
        attention.apply(q, attention.derive({"kind": "operator_message", "data": mail}), now=i)
    failed = {"agent": "bob", "kind": "failed", "reason": "crashed 5 times"}
    attention.apply(q, attention.derive({"kind": "event", "data": failed}), now=0.5)
    pending = {"id": 9, "agent": "bob", "kind": "spawn", "status": "pending"}
    attention.apply(q, attention.derive({"kind": "approval", "key": "9", "data": pending}))
    top = attention.list_items(q, attention.Filter(), limit=3)
    assert [i["kind"] for i in top] == ["failed", "approval", "mail"]
    counts = attention.counts(q)
    assert counts["by_severity"] == {"critical": 1, "high": 1, "info": 300}
    decided = {**pending, "status": "approved"}
    [settled] = attention.apply(
        q, attention.derive({"kind": "approval", "key": "9", "data": decided})
    )
    assert settled["state"] == "done"
    done_all = attention.mark(q, "done", None, attention.Filter(kind="mail"))
    assert len(done_all) == 300 and attention.counts(q)["open"] == 1


def test_bad_filters_are_refused_with_the_field_named() -> None:
    for args, word in (
        ({"state": "closed"}, "state"),
        ({"severity": "urgent"}, "severity"),
        ({"kind": "weather"}, "kind"),
        ({"agent": 5}, "agent"),
    ):
        with pytest.raises(attention.WireError) as caught:
            attention.check_filter(args)
        assert caught.value.code == "bad_request" and word in caught.value.message


# --- a real hive: API, hivectl ------------------------------------------------------------


def crash_bob_until_failed(dash: DashboardHive) -> None:
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "boom"})
    wait_until(lambda: dash.row("bob")["failed"], timeout=60, what="bob to be failed")


def flood_operator(dash: DashboardHive, n: int) -> None:
    dash.hive.admin("pause", names=["carol"])
    with dash.hive.agent("carol") as carol:  # the test plays carol: routine mail
        for i in range(n):
            carol.call("send", to="operator", body=f"routine report {i}")


def open_kinds(dash: DashboardHive, **query: Any) -> list[str]:
    items = dash.ok("GET", "/api/inbox", params=query)["items"]
    return [i["kind"] for i in items]


def test_inbox_through_the_api_and_hivectl(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG)
    crash_bob_until_failed(dash)
    flood_operator(dash, 200)
    wait_until(
        lambda: dash.ok("GET", "/api/inbox")["counts"]["by_severity"]["info"] >= 200,
        what="200 mail items",
    )
    kinds = open_kinds(dash, limit=2)
    assert kinds == ["failed", "crash"], kinds  # the failure first, whatever the mail
    cli = hivectl(dash.hive, "inbox", "--severity", "high").json()
    assert [i["kind"] for i in cli["items"]] == ["failed", "crash"]
    failed_id = cli["items"][0]["id"]
    assert "exploded on purpose" in cli["items"][1]["body"]
    # Mark all mail done (the filter), then the same again: a no-op that says so.
    marked = dash.ok("POST", "/api/inbox/mark", json={"state": "done", "all": True, "kind": "mail"})
    assert marked["changed"] == 200 and marked["counts"]["open"] == 2
    again = dash.ok("POST", "/api/inbox/mark", json={"state": "done", "all": True, "kind": "mail"})
    assert again["changed"] == 0
    human = hivectl(dash.hive, "inbox", "--mark", "seen", str(failed_id), json_out=False)
    assert human.returncode == 0 and "1 item(s) now seen" in human.stdout
    [item] = dash.ok("GET", "/api/inbox", params={"state": "seen"})["items"]
    assert item["id"] == failed_id
    # Resetting bob clears the failure: its item is settled by the hive (bob then crashes
    # on the same message again, which is a new failure, a new item).
    dash.hive.admin("reset", names=["bob"])
    wait_until(
        lambda: (
            failed_id
            in [
                i["id"]
                for i in dash.ok("GET", "/api/inbox", params={"state": "done", "kind": "failed"})[
                    "items"
                ]
            ]
        ),
        what="the failed item settled",
    )


def test_bad_inbox_requests_answer_400_and_change_nothing(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG)
    flood_operator(dash, 1)
    wait_until(lambda: dash.ok("GET", "/api/inbox")["counts"]["open"] == 1, what="one item")
    for method, path, kw in (
        ("GET", "/api/inbox", {"params": {"state": "closed"}}),
        ("GET", "/api/inbox", {"params": {"limit": "0"}}),
        ("POST", "/api/inbox/mark", {"json": {"state": "gone", "ids": [1]}}),
        ("POST", "/api/inbox/mark", {"json": {"state": "done"}}),
        ("POST", "/api/inbox/mark", {"json": {"state": "done", "ids": ["x"]}}),
        ("POST", "/api/inbox/mark", {"json": {"state": "done", "ids": [1], "all": True}}),
    ):
        r = dash.api(method, path, **kw)
        assert r.status_code == 400, (path, kw, r.text)
        assert r.json()["error"]["code"] in ("bad_request", "empty_scope")
    assert dash.ok("GET", "/api/inbox")["counts"]["open"] == 1
    cli = hivectl(dash.hive, "inbox", "--mark", "done", json_out=False)
    assert cli.returncode != 0 and "ids" in cli.stderr


# --- in Chromium --------------------------------------------------------------------------


def test_a_failure_stays_visible_under_a_flood_of_mail(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG)
    with dash.browser() as page:
        page.wait_for_selector("#live[data-state=up]")
        crash_bob_until_failed(dash)
        flood_operator(dash, 200)
        page.wait_for_function(
            "() => Number(document.getElementById('attention-count').textContent) >= 202"
        )
        # The strip's first item is the failure, and the header says critical.
        page.wait_for_function(
            """() => { const li = document.querySelector('#notification-list li');
                       return li && li.dataset.kind === 'failed'; }"""
        )
        assert page.get_attribute("#inbox-link", "data-level") == "critical"
        page.click("#inbox-link")
        page.wait_for_selector("#inbox-items li.item")
        first = page.locator("#inbox-items li.item").first
        assert first.get_attribute("data-kind") == "failed"
        assert "bob failed" in first.inner_text()
        screenshot(page, "inbox-flood")


def test_inbox_state_survives_reload_and_is_shared_by_two_tabs(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG)
    flood_operator(dash, 3)
    with dash.browser() as page:
        other = page.context.new_page()
        for tab in (page, other):
            tab.goto(f"{dash.url}/inbox")
            tab.wait_for_selector("#live[data-state=up]")
            tab.wait_for_function(
                "() => document.querySelectorAll('#inbox-items li.item').length === 3"
            )
        page.locator("#inbox-items li.item button:has-text('done')").first.click()
        page.wait_for_selector("#inbox-result:has-text('1 item done')")
        # The other tab follows without a reload; its header count too.
        other.wait_for_function(
            "() => document.querySelectorAll('#inbox-items li.item').length === 2"
        )
        other.wait_for_selector("#attention-count:text-is('2')")
        other.click("#mark-all-done")
        other.wait_for_selector("#inbox-result:has-text('2 items done')")
        other.click("#mark-all-done")  # nothing left: the button says so
        other.wait_for_selector("#inbox-result:has-text('nothing to mark')")
        page.wait_for_selector("#inbox-empty:not([hidden])")
        page.reload()
        page.wait_for_selector("#inbox-empty:not([hidden])")
        assert page.inner_text("#attention-count") == "0"
        page.select_option("#f-state", "done")
        page.wait_for_function(
            "() => document.querySelectorAll('#inbox-items li.item[data-state=done]').length === 3"
        )
        assert hivectl(dash.hive, "inbox", "--state", "done").json()["total"] == 3


def test_browser_notifications_for_high_severity_only_once_across_tabs(
    make_dashboard: Make,
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.ui_harness import CHROMIUM_ARGS

    # What a tab showed is kept in its sessionStorage, so a reload does not forget it.
    record = """
      window.shownList = () => JSON.parse(sessionStorage.getItem('shown') || '[]');
      class FakeNotification {
        static permission = 'granted';
        static requestPermission() { return Promise.resolve('granted'); }
        constructor(title, opts) {
          sessionStorage.setItem('shown', JSON.stringify([...window.shownList(), opts.tag]));
        }
      }
      window.Notification = FakeNotification;
    """
    dash = make_dashboard(CONFIG)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(record)
            context.add_cookies([{"name": "hive_operator", "value": dash.token, "url": dash.url}])
            tabs = [context.new_page(), context.new_page()]
            for tab in tabs:
                tab.goto(dash.url)
                tab.wait_for_selector("#live[data-state=up]")
            flood_operator(dash, 1)  # mail: into the strip, never a browser notification
            for tab in tabs:
                tab.wait_for_selector("#notification-list li[data-kind=mail]")
            crash_bob_until_failed(dash)
            for tab in tabs:
                tab.wait_for_selector("#notification-list li[data-kind=failed]")

            def shown() -> list[str]:
                return [tag for tab in tabs for tag in tab.evaluate("() => window.shownList()")]

            # crash and failed: one notification each, in one tab only.
            wait_until(lambda: len(shown()) >= 2, what="two notifications")
            tabs[0].reload()  # a reload re-reads the inbox: nothing is notified again
            tabs[0].wait_for_selector("#notification-list li[data-kind=failed]")
            flood_operator(dash, 1)  # an update every tab sees after the reload
            for tab in tabs:
                tab.wait_for_function(
                    "() => document.querySelectorAll('#notification-list li[data-kind=mail]')"
                    ".length === 2"
                )
            tags = shown()
            assert len(tags) == len(set(tags)) == 2, tags
            assert all(t.startswith("inbox:") for t in tags)
        finally:
            browser.close()
