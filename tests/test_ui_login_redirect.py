"""Where the login sends the browser: only ever a path on the dashboard's own origin.

The validator is tested with a list of hostile values; the two reported values are also
played in a real Chromium (Debian's, headless, Playwright), which is what decides how a
Location is normalised."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from hive.ui.auth import safe_next_path
from tests.ui_harness import CHROMIUM, CHROMIUM_ARGS, DashboardHive, make_dashboard

__all__ = ["make_dashboard"]

HOSTILE = [
    "/\\evil.example/x",
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r/evil.example/x",
    " //evil.example/x",
    "\t//evil.example/x",
    "//evil.example/x",
    "///evil.example/x",
    "/\\/evil.example/x",
    "\\\\evil.example/x",
    "http://evil.example/x",
    "https:evil.example",
    "javascript:alert(1)",
    "data:text/html,hi",
    "evil.example/x",
    "/x\x00/",
    "/x\x7f",
    "/x\x85",
    "/\u2028/evil.example",
    "/\uff0f/evil.example",
    "/ /evil.example",
    "",
    "/" + "a" * 5000,
    None,
    ["/agents/bob"],
]

SAFE = ["/", "/agents/bob", "/agents/bob?tab=log&x=1#end", "/a/b/../c", "/%2F%2Fevil.example"]


@pytest.mark.parametrize("target", HOSTILE, ids=repr)
def test_a_hostile_next_falls_back_to_the_dashboard(target: object) -> None:
    assert safe_next_path(target) == "/"


@pytest.mark.parametrize("target", SAFE)
def test_a_path_on_this_site_is_kept(target: str) -> None:
    assert safe_next_path(target) == target


CONFIG = """
[[agent]]
name = "bob"
"""


@pytest.mark.parametrize("target", ["/\\evil.example/x", "/\t/evil.example/x"], ids=repr)
def test_chromium_stays_on_the_dashboard_after_login(make_dashboard: object, target: str) -> None:
    from playwright.sync_api import Error, sync_playwright

    dash: DashboardHive = make_dashboard(CONFIG)  # type: ignore[operator]
    ours = urlsplit(dash.url).netloc
    # evil.example never reaches DNS: a browser that follows the redirect fails locally.
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.example ~NOTFOUND"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url))
            page.goto(f"{dash.url}/login?next={quote(target, safe='')}")
            assert page.input_value("input[name=next]") == target
            page.fill("#token", dash.token)
            try:
                with page.expect_navigation():
                    page.click("button[type=submit]")
            except Error as e:
                pytest.fail(f"the login navigated away: {e}; requests: {asked}")
            assert [u for u in asked if urlsplit(u).netloc != ours] == []
            assert page.url == f"{dash.url}/"
        finally:
            browser.close()
