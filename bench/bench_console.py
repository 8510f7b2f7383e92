"""The operator's console in Chromium (issue 14): page weight, load time, idle traffic and
DOM update latency, against the issue's goals measured in the same run.

1. Cold and warm load of the fleet page and an agent page: bytes transferred (as Chromium
   counts them on the wire: headers plus the body as sent, compressed or not) and the time
   to the page's `load` event; cold is a fresh browser cache, warm the same page reloaded.
2. An idle open agent page: bytes per minute over ``--idle`` seconds.
3. DOM update latency with 200 agents, 20 of them taking turns all the time: for each live
   update, the time the page spends applying it (the stream handler, DOM patch included),
   from the moment the event reached the page.

    python bench/bench_console.py [--idle 30] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import RunningHive, percentile, ratio
from tests.ui_harness import CHROMIUM, CHROMIUM_ARGS, free_port

GOAL_AGENT_COLD_KB = 250.0
GOAL_IDLE_KB_MIN = 100.0
GOAL_P99_MS = 50.0
AGENTS, TURNING = 200, 20


def config(agents: int, turning: int) -> str:
    """A manager and agents a000...; the first ``turning`` play ping-pong in pairs (each
    turn sets a status, works 0.2 s and writes to its partner), so they turn all the time."""
    blocks = ['[hive]\nbackoff_initial = 0.1\n\n[[agent]]\nname = "manager"\n']
    for i in range(agents - 1):
        script = ""
        if i < turning:
            partner = f"a{i ^ 1:03d}"
            script = (
                '[[agent.script]]\nmatch = "*"\n'
                'do = [{op = "set_status", text = "working {count}"}, '
                '{op = "sleep", seconds = 0.2}, '
                f'{{op = "send", to = "{partner}", body = "again"}}]\n'
            )
        blocks.append(f'[[agent]]\nname = "a{i:03d}"\nparent = "manager"\n{script}')
    return "\n".join(blocks)


def start(root: Path, text: str) -> tuple[RunningHive, str]:
    port = free_port()
    hive = RunningHive.start(root, text, None, dashboard_port=port)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return hive, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the dashboard did not answer")


class Wire:
    """Bytes Chromium received on the wire (CDP Network events), per page."""

    def __init__(self, page: Any) -> None:
        self.total = 0
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)
        self.seen: dict[str, int] = {}

    def _data(self, ev: dict[str, Any]) -> None:
        # encodedDataLength: bytes off the wire (streams count as they arrive)
        self.total += int(ev.get("encodedDataLength") or 0)
        self.seen[ev["requestId"]] = self.seen.get(ev["requestId"], 0) + int(
            ev.get("encodedDataLength") or 0
        )

    def _finished(self, ev: dict[str, Any]) -> None:
        # The whole response (headers included); what dataReceived already counted is removed.
        whole = int(ev.get("encodedDataLength") or 0)
        self.total += max(0, whole - self.seen.pop(ev["requestId"], 0))


def load(page: Any, url: str, wire: Wire) -> tuple[float, float]:
    """(KB transferred, ms to the load event) of one navigation."""
    before = wire.total
    page.goto(url, wait_until="load")
    ms = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n.loadEventEnd - n.startTime; }"
    )
    page.wait_for_selector("#live[data-state=up]")
    page.wait_for_load_state("networkidle")
    return (wire.total - before) / 1024, float(ms)


@contextmanager
def logged_in_page(
    pw: Any, url: str, token: str, init_script: str = "", **context: Any
) -> Iterator[Any]:
    """A fresh Chromium with the operator's cookie set (a new browser each time: a cold
    cache for the page weights)."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        ctx = browser.new_context(**context)
        if init_script:
            ctx.add_init_script(init_script)
        ctx.add_cookies([{"name": "hive_operator", "value": token, "url": url}])
        yield ctx.new_page()
    finally:
        browser.close()


def weights(pw: Any, url: str, token: str) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for name, path in (("fleet", "/"), ("agent", "/agents/a000")):
        with logged_in_page(pw, url, token) as page:
            wire = Wire(page)
            cold_kb, cold_ms = load(page, url + path, wire)
            warm_kb, warm_ms = load(page, url + path, wire)
            out[name] = (cold_kb, cold_ms, warm_kb, warm_ms)
    return out


def idle_rate(pw: Any, url: str, token: str, seconds: float) -> float:
    with logged_in_page(pw, url, token) as page:
        wire = Wire(page)
        page.goto(url + "/agents/manager", wait_until="load")
        page.wait_for_selector("#live[data-state=up]")
        page.wait_for_load_state("networkidle")
        before = wire.total
        page.wait_for_timeout(seconds * 1000)  # the measurement window itself
        return (wire.total - before) / 1024 / (seconds / 60)


# Wraps every live-stream handler of the page: the time to apply each event, DOM included.
TIMING = """
  window.applyMs = [];
  const Original = window.EventSource;
  window.EventSource = class extends Original {
    set onmessage(fn) {
      super.onmessage = (ev) => { const t0 = performance.now(); fn(ev);
                                  window.applyMs.push(performance.now() - t0); };
    }
    get onmessage() { return super.onmessage; }
  };
"""


def dom_latency(pw: Any, url: str, token: str, seconds: float) -> list[float]:
    viewport = {"width": 1440, "height": 900}
    with logged_in_page(pw, url, token, TIMING, viewport=viewport) as page:
        page.goto(url + "/", wait_until="load")
        page.wait_for_function(
            f"() => document.querySelectorAll('#agent-rows tr').length === {AGENTS}"
        )
        page.evaluate("() => { window.applyMs = []; }")
        page.wait_for_timeout(seconds * 1000)  # the measurement window itself
        values: list[float] = page.evaluate("() => window.applyMs.slice(1)")  # skip the snapshot
        return values


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser()
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=20.0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        hive, url = start(Path(tmp) / "small", config(4, 0))
        token = (hive.state_dir / "operator-token").read_text().strip()
        try:
            for name, (ckb, cms, wkb, wms) in weights(pw, url, token).items():
                print(
                    f"{name:6s} cold {ckb:7.1f} KB {cms:6.0f} ms   warm {wkb:7.1f} KB {wms:6.0f} ms"
                )
                if name == "agent":
                    goal = ratio(ckb, GOAL_AGENT_COLD_KB)
                    print(f"  agent page cold vs goal {GOAL_AGENT_COLD_KB:g} KB: {goal}")
            rate = idle_rate(pw, url, token, a.idle)
            print(
                f"idle agent page: {rate:.2f} KB/min over {a.idle:g} s "
                f"(goal {GOAL_IDLE_KB_MIN:g}: {ratio(rate, GOAL_IDLE_KB_MIN)})"
            )
        finally:
            hive.terminate()
        hive, url = start(Path(tmp) / "big", config(AGENTS, TURNING))
        token = (hive.state_dir / "operator-token").read_text().strip()
        try:
            for i in range(0, TURNING, 2):
                hive.admin("send", to=f"a{i:03d}", body="go")
            ms = dom_latency(pw, url, token, a.seconds)
            p50, p99 = percentile(ms, 50), percentile(ms, 99)
            print(
                f"DOM update, {AGENTS} agents / {TURNING} turning: {len(ms)} updates in "
                f"{a.seconds:g} s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(ms or [0]):.2f} ms "
                f"(goal p99 {GOAL_P99_MS:g} ms: {ratio(p99, GOAL_P99_MS)})"
            )
        finally:
            hive.terminate()


if __name__ == "__main__":
    main()
