"""Helpers for the control-plane tests: hivectl as a subprocess, concurrent resolvers,
questions asked from a background thread, git in a config repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hive.client import HiveError
from tests.hive_harness import RunningHive

# manager: plays nothing (its inbox fills with notices, its turns do nothing).
# worker: "hold" keeps its turn open in recv until the next message; "ping" answers.
CONFIG = """
[hive]
backoff_initial = 0.2

[[agent]]
name = "manager"

[[agent]]
name = "alice"

[[agent]]
name = "worker"
[[agent.script]]
match = "hold"
do = [{op = "recv", wait = 150}, {op = "reply", body = "done with {body}"}]
[[agent.script]]
match = "ping"
do = [{op = "reply", body = "pong from {agent}"}]
"""


@dataclass
class Cli:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def hivectl(hive: RunningHive, *args: str, json_out: bool = True, stdin: str = "") -> Cli:
    """Run the real hivectl (a subprocess) against ``hive``'s admin socket."""
    argv = [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(hive.admin_path)]
    if json_out:
        argv.append("--json")
    done = subprocess.run(
        [*argv, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HIVE_ADMIN_SOCKET": "/nonexistent/admin.sock"},
    )
    return Cli(done.returncode, done.stdout, done.stderr)


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (released together by a barrier); each result is the
    call's value or the HiveError it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except HiveError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a resolver hung"
    return results


@dataclass
class Asked:
    """An ask_operator call running in a thread, as hive-mcp would make it."""

    thread: threading.Thread
    box: dict[str, Any] = field(default_factory=dict)

    def result(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "ask_operator did not return"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


def ask(hive: RunningHive, agent: str, **args: Any) -> Asked:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with hive.agent(agent, timeout=120) as c:
                box["result"] = c.call("ask_operator", **args)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Asked(thread, box)


def pending(hive: RunningHive) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = hive.admin("pending")["pending"]
    return rows


def wait_pending(hive: RunningHive, count: int = 1, what: str = "") -> list[dict[str, Any]]:
    return hive.wait_until(
        lambda: (rows := pending(hive)) and len(rows) >= count and rows,
        what=what or f"{count} pending item(s)",
    )


def as_agent(hive: RunningHive, who: str, op: str, /, **args: Any) -> Any:
    with hive.agent(who) as c:
        return c.call(op, **args)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "manager",
        "GIT_AUTHOR_EMAIL": "manager@hive",
        "GIT_COMMITTER_NAME": "manager",
        "GIT_COMMITTER_EMAIL": "manager@hive",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def inbox(hive: RunningHive, agent: str) -> list[dict[str, Any]]:
    """Messages addressed to ``agent``, oldest first."""
    return [m for m in reversed(hive.messages(agent)) if m["to"] == agent]
