"""A fleet larger than its memory budget: N real claude agents (the REAL CLI against the
fake API, tests/fake_anthropic.py) under ``memory_budget_mb``, each receiving M messages.

    .venv/bin/python -m bench.bench_fleet [--agents 100] [--messages 10] [--budget-mb 6144]

Each agent is sent its next message once its previous one is delivered (one in flight per
agent, so each message is a turn of its own), until every message is delivered or
``--max-seconds`` pass (the run is bounded; what did not finish is reported, never lost:
it is still pending). Agents are persistent (the default): a resident session costs
~300 MiB, so the budget holds only some of them; the Admission actor queues the turns
and retires idle sessions least recently used first.

Prints: turns/minute, queue wait p50/p99 (the ``admitted`` events), peak RSS of the
supervisor's whole process tree (sampled every 0.2 s) against the budget, crashed turns
(an OOM kill would be one), messages delivered / pending / lost, and the limit measured
in the same run: a bare ``claude -p`` start.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.common import RunningHive, median, percentile, ratio
from bench.limits import claude_start_ms
from tests.claude_hive import claude_agent, hive_toml
from tests.fake_anthropic import FakeAnthropic, Text

MIB = 2**20


class PeakRss:
    """The largest sum of RSS over a process and all its descendants, sampled."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / MIB


def drive(hive: RunningHive, names: list[str], messages: int, deadline: float) -> dict[str, int]:
    """Send each agent its next message once the previous one is delivered."""
    sent = dict.fromkeys(names, 0)
    while time.monotonic() < deadline:
        rows = {r["name"]: r for r in hive.admin("list")["agents"]}
        for name in names:
            row = rows[name]
            idle = row["inbox_depth"] == 0 and row["turn_state"] == "idle"
            if sent[name] < messages and idle and (sent[name] == 0 or row["last_turn"]):
                hive.admin("send", to=name, body=f"message {sent[name]} for {name}")
                sent[name] += 1
        if all(n == messages for n in sent.values()) and all(
            rows[n]["inbox_depth"] == 0 and rows[n]["turn_state"] == "idle" for n in names
        ):
            break
        time.sleep(0.2)  # polling the hive's state, bounded by the deadline
    return sent


def tally(hive: RunningHive, names: list[str]) -> dict[str, object]:
    delivered = pending = ok = crashed = 0
    waits: list[float] = []
    for name in names:
        for m in hive.messages(name):
            delivered += m["state"] == "delivered"
            pending += m["state"] == "pending"
        for t in hive.turns(name):
            ok += t["exit_class"] == "ok"
            crashed += t["exit_class"] == "crash"
        events = hive.admin("events", agent=name, limit=1000)["events"]
        waits += [float(e["data"]["waited"]) for e in events if e["kind"] == "admitted"]
    return {"delivered": delivered, "pending": pending, "ok": ok, "crashed": crashed,
            "waits": waits}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--budget-mb", type=int, default=6144)
    p.add_argument("--max-seconds", type=float, default=1800)
    args = p.parse_args()
    bare = claude_start_ms()
    names = [f"a{i:03d}" for i in range(args.agents)]
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic(default=Text("ok")) as api:
        config = hive_toml(*(claude_agent(n) for n in names), dashboard=False,
                           memory_budget_mb=args.budget_mb)  # fmt: skip
        hive = RunningHive.start(Path(tmp), config, env=api.env())
        try:
            peak = PeakRss(hive.process.pid)
            t0 = time.monotonic()
            sent = drive(hive, names, args.messages, t0 + args.max_seconds)
            elapsed = time.monotonic() - t0
            peak_mib = peak.done()
            t = tally(hive, names)
            alive = hive.process.poll() is None
        finally:
            hive.terminate()
    total = sum(sent.values())
    waits = t["waits"]
    assert isinstance(waits, list)
    print(f"{args.agents} claude agents, {args.messages} messages each, memory_budget_mb = "
          f"{args.budget_mb}, {elapsed:.0f} s (bounded at {args.max_seconds:g} s)")  # fmt: skip
    print(f"  messages sent {total}, delivered {t['delivered']}, pending {t['pending']}, "
          f"lost {total - t['delivered'] - t['pending']}")  # fmt: skip
    print(f"  turns ok {t['ok']}, crashed {t['crashed']}; supervisor alive: {alive}")
    print(f"  turns/minute {t['ok'] / elapsed * 60:.1f}")  # type: ignore[operator]
    print(f"  queue wait p50 {median(waits):.2f} s, p99 {percentile(waits, 99):.2f} s "
          f"({len(waits)} admissions)")  # fmt: skip
    print(f"  peak RSS of the supervisor's tree {peak_mib:,.0f} MiB "
          f"({ratio(peak_mib, args.budget_mb)} of the budget)")  # fmt: skip
    per_turn = elapsed / max(1, t["ok"]) * 1000  # type: ignore[operator]
    print(f"  limit, same run: bare claude -p start {bare:.0f} ms; wall time per turn "
          f"{per_turn:.0f} ms = {ratio(per_turn, bare)} of it")  # fmt: skip


if __name__ == "__main__":
    main()
