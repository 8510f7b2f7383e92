"""hivectl never hands an agent's text to the operator's terminal raw.

A real supervisor; alice (played by the test on her real agent socket) plants terminal
escapes in her status text, a question, a message to the operator and a line of her
agent.log. The real hivectl (a subprocess) shows them: the human output holds no control
character (no ESC, BEL, C1, bidi override), and --json gives the text back exactly."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from hive.cli.hivectl import terminal_safe
from tests.control_support import CONFIG, ask, hivectl, wait_pending
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

# A window title change, a screen clear, a hidden OSC 8 link, a C1 CSI, DEL, a carriage
# return and a right-to-left override.
EVIL = (
    "\x1b]0;owned\x07 \x1b[2J "
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \x9b31m \x7f x\rover \u202eabc\u2066"
)
# The daemon's log tail splits lines on \r too (str.splitlines), so the log line has none.
LOG_LINE = EVIL.replace("\r", " ")
FORBIDDEN = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]} - {"\n", "\t"}
FORBIDDEN |= {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def raw_controls(text: str) -> list[str]:
    return sorted({repr(ch) for ch in text if ch in FORBIDDEN})


@pytest.fixture
def hive(make_hive: MakeHive) -> RunningHive:
    hive = make_hive(CONFIG)
    hive.wait_until(lambda: len(hive.admin("list")["agents"]) == 3, what="the agents")
    return hive


def test_the_escaped_form_shows_every_character() -> None:
    shown = terminal_safe(EVIL)
    assert raw_controls(shown) == []
    assert "\\x1b]0;owned\\x07" in shown and "\\x9b31m" in shown and "\\u202eabc" in shown


def test_planted_escapes_never_reach_the_terminal_and_json_stays_exact(
    hive: RunningHive,
) -> None:
    with hive.agent("alice") as alice:
        alice.call("set_status", text=EVIL)
    asked = ask(hive, "alice", question=EVIL)
    [question] = wait_pending(hive)
    log = hive.state_dir / "agents" / "alice" / "agent.log"
    with log.open("a") as f:  # alice writes her own log
        f.write(f"before\n{LOG_LINE}\nafter\n")

    for verb in (["list"], ["status", "alice"], ["pending"], ["logs", "alice"]):
        human = hivectl(hive, *verb, json_out=False)
        assert human.returncode == 0, human.stderr
        assert raw_controls(human.stdout) == [], (verb, human.stdout)
        assert raw_controls(human.stderr) == [], (verb, human.stderr)
    assert "\\x1b]0;owned\\x07" in hivectl(hive, "status", "alice", json_out=False).stdout
    assert "\\x1b[2J" in hivectl(hive, "pending", json_out=False).stdout

    assert hivectl(hive, "status", "alice").json()["status_text"] == EVIL
    assert hivectl(hive, "pending").json()["pending"][0]["question"] == EVIL
    assert LOG_LINE in hivectl(hive, "logs", "alice").json()["lines"]

    hive.admin("answer", id=question["id"], answer="no")
    assert asked.result()["status"] == "answered"


class Subscriber:
    """``hivectl subscribe`` running as a subprocess; its stdout lines, as they come."""

    def __init__(self, hive: RunningHive, *args: str) -> None:
        argv = [sys.executable, "-m", "hive.cli.hivectl", "--socket", str(hive.admin_path)]
        self.process = subprocess.Popen(
            [*argv, *args, "subscribe"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "HIVE_ADMIN_SOCKET": "/nonexistent/admin.sock"},
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def until(self, done: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not done(seen):
            left = deadline - time.monotonic()
            assert left > 0, f"hivectl subscribe printed only: {seen}"
            try:
                seen.append(self.lines.get(timeout=left).decode())
            except queue.Empty:
                continue
        return seen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def test_subscribe_shows_planted_escapes_escaped_and_json_exact(hive: RunningHive) -> None:
    human, machine = Subscriber(hive), Subscriber(hive, "--json")
    try:
        human.until(lambda seen: len(seen) >= 1)  # the snapshot: subscribed
        machine.until(lambda seen: len(seen) >= 1)
        with hive.agent("alice") as alice:
            alice.call("set_status", text=EVIL)
            alice.call("send", to="operator", body=EVIL)
        asked = ask(hive, "alice", question=EVIL)
        [question] = wait_pending(hive)

        def saw_all(lines: list[str]) -> bool:
            text = "".join(lines)
            return all(k in text for k in (" question ", " operator_message ", "owned"))

        shown = human.until(saw_all)
        assert raw_controls("".join(shown)) == [], shown

        def kinds(lines: list[str]) -> set[str]:
            return {json.loads(line)["data"].get("kind") for line in lines}

        frames = [json.loads(line) for line in machine.until(
            lambda seen: {"question", "operator_message"} <= kinds(seen)
        )]  # fmt: skip
        data = [f["data"] for f in frames if f.get("push") == "state"]
        assert any(d["kind"] == "question" and d["data"]["question"] == EVIL for d in data)
        assert any(d["kind"] == "operator_message" and d["data"]["body"] == EVIL for d in data)
        hive.admin("answer", id=question["id"], answer="no")
        assert asked.result()["status"] == "answered"
    finally:
        human.stop()
        machine.stop()
