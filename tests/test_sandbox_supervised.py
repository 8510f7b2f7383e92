"""The same scripted turn through the real supervisor in each runnable sandbox: the agent
talks through its own socket from inside, and the bwrap one cannot see the hive's db."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hive_harness import RunningHive

CONFIG = """
[hive]
# The test venv's Python lives under /root, which the agents' uids cannot enter.
agent_python = "/usr/bin/python3"

[[agent]]
name = "manager"

[[agent]]
name = "inside"
sandbox = "{sandbox}"
[[agent.script]]
match = "*"
do = [{{op = "set_status", text = "in {sandbox}"}}, {{op = "reply", body = "pong {{body}}"}}]
"""


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A hive root the agents' own uids can traverse (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hive-sandboxed-"))
    os.chmod(root, 0o711)
    yield root
    if not os.environ.get("KEEP"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("sandbox", ["process", "bwrap"])
def test_scripted_agent_answers_from_inside_its_sandbox(open_root: Path, sandbox: str) -> None:
    hive = RunningHive.start(open_root / "hive", CONFIG.format(sandbox=sandbox))
    try:
        check_answer(hive, sandbox)
    finally:
        hive.terminate()


def check_answer(hive: RunningHive, sandbox: str) -> None:
    hive.admin("send", to="inside", body="ping")
    hive.wait_until(
        lambda: any(m["body"] == "pong ping" for m in hive.messages("operator")),
        what=f"the agent in the {sandbox} sandbox to answer",
    )
    status = hive.wait_until(
        lambda: (s := hive.status("inside"))["last_turn"] and s, what="the turn to end"
    )
    assert status["status_text"] == f"in {sandbox}"
    assert status["last_turn"]["exit_class"] == "ok"
