"""A real hive with its dashboard on a free port, and clients for it.

dash = make_dashboard(CONFIG)
dash.api("POST", "/api/agents/bob/messages", json={"body": "hi"})
with dash.browser() as page: ...     # Playwright on Debian's chromium, logged in
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hive_harness import RunningHive, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DashboardHive:
    hive: RunningHive
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.hive.state_dir / "operator-token").read_text().strip()

    @property
    def csrf(self) -> str:
        result: str = self.api("GET", "/api/session").json()["csrf"]
        return result

    def client(self, *, token: bool = True, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def api(self, method: str, path: str, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        with self.client() as c:
            headers = dict(kw.pop("headers", {}))
            if method != "GET" and csrf:
                session = c.get("/api/session").json()
                headers.setdefault("X-CSRF-Token", session["csrf"])
            return c.request(method, path, headers=headers, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.api(method, path, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def row(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.ok("GET", f"/api/agents/{name}")
        return result

    @contextmanager
    def browser(self, name: str = "page") -> Iterator[Any]:
        """A logged-in Chromium page (Debian's chromium, never a downloaded browser)."""
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/apt-packages.txt)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                page.on("console", lambda m: print(f"[browser {m.type}] {m.text}"))
                page.on("pageerror", lambda e: print(f"[browser error] {e}"))
                page.goto(f"{self.url}/login")
                page.fill("#token", self.token)
                page.click("button[type=submit]")
                page.wait_for_url(f"{self.url}/")
                yield page
            finally:
                browser.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sse_events(
    dash: DashboardHive,
    path: str,
    stop: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 20,
) -> list[dict[str, Any]]:
    """Read server-sent events from ``path`` until ``stop(events)`` is true."""
    events: list[dict[str, Any]] = []
    with dash.client(timeout=timeout) as c, c.stream("GET", path) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if stop(events):
                    break
    return events


@pytest.fixture
def make_dashboard(tmp_path: Path) -> Iterator[Callable[..., DashboardHive]]:
    started: list[RunningHive] = []

    def make(
        config_text: str,
        name: str = "hive",
        root: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> DashboardHive:
        port = free_port()
        hive = RunningHive.start((root or tmp_path) / name, config_text, env, dashboard_port=port)
        started.append(hive)
        dash = DashboardHive(hive, port)

        def healthy() -> bool:
            try:
                return httpx.get(f"{dash.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        hive.wait_until(healthy, timeout=30, what="the dashboard to answer")
        return dash

    yield make
    for hive in started:
        if hive.process.poll() is None:
            hive.terminate()


__all__ = ["DashboardHive", "make_dashboard", "screenshot", "sse_events", "wait_until"]
