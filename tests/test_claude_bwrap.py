"""The production path, end to end: the REAL claude CLI in a bwrap sandbox, started by the
real supervisor (run as root here, so the sandbox is a uid of its own), against the fake
Anthropic API in this process.

What only this proves: the MCP relay (``<python> -I -S hive/mcp_relay.py``, started by
claude inside the sandbox) reaches the agent socket bound in and serves hive's tools; the
CLI reaches the API from inside; its CLAUDE_CONFIG_DIR and session files, written by the
sandbox's uid, carry the conversation to the next turn (``--resume`` for a process per
turn, the same process for a persistent session); and what the model runs through its
Bash tool in there does not reach the hive's db or another agent's conversation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hive.sandboxes.uids import uid_slot
from tests.claude_hive import BOB_ANSWERS, ClaudeHive, claude_agent, hive_toml
from tests.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.hive_harness import RunningHive
from tests.ui_harness import free_port

# The test venv's Python lives under /root, which bwrap hides and the agents' uids cannot
# enter: the relay runs on Debian's own interpreter, as a packaged hive's would.
AGENT_PYTHON = "/usr/bin/python3"
HIVE_TOOLS = {f"mcp__hive__{tool}" for tool in ("send", "recv", "set_status")}


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A hive root the agents' own uids can traverse (pytest's tmp dirs are 0700), under
    /var/tmp: /tmp is a private tmpfs in the sandbox, which would hide the hive's files
    whatever the sandbox's masks do."""
    if os.geteuid() != 0:
        pytest.fail("these tests prove what a root supervisor does: run them as root")
    root = Path(tempfile.mkdtemp(prefix="hive-claude-bwrap-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start(open_root: Path, api: FakeAnthropic) -> Iterator[Callable[..., ClaudeHive]]:
    started: list[RunningHive] = []

    def start(*agents: str, dashboard_port: int | None = None) -> ClaudeHive:
        config = hive_toml(*agents, agent_python=AGENT_PYTHON, backoff_initial=0.05)
        hive = RunningHive.start(open_root / "hive", config, api.env(), dashboard_port)
        started.append(hive)
        return ClaudeHive(hive, api)

    yield start
    for hive in started:
        hive.terminate()


def in_bwrap(name: str, **fields: object) -> str:
    return claude_agent(name, sandbox="bwrap", **fields)


def session_of(hive: ClaudeHive, turn: dict[str, Any]) -> str:
    """The claude session a turn played in, as the CLI reported it (its init event)."""
    [init] = hive.wait_until(lambda: hive.of(int(turn["id"]), "init")[:1], what="init")
    return str(init["session_id"])


def session_file(hive: ClaudeHive, name: str, session: str, holding: str) -> Path:
    """Where the CLI keeps that session, $CLAUDE_CONFIG_DIR/projects/<cwd>/<id>.jsonl, once
    it holds ``holding`` (a session process may write it just after its turn's result)."""
    config_dir = hive.agent_dir(name) / "state" / "claude"

    def written() -> Path | None:
        found = list(config_dir.glob(f"projects/*/{session}.jsonl"))
        return found[0] if len(found) == 1 and holding in found[0].read_text() else None

    path: Path = hive.wait_until(written, what=f"{name}'s session file holding {holding!r}")
    return path


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "per_turn"])
def test_a_claude_agent_in_bwrap_acts_through_its_relay_and_keeps_its_conversation(
    start: Callable[..., ClaudeHive], api: FakeAnthropic, persistent: bool
) -> None:
    api.script(
        ToolUse("mcp__hive__send", {"to": "bob", "body": "ping from alice"}), Text("asked bob")
    )
    hive = start(in_bwrap("alice", persistent=persistent), BOB_ANSWERS)
    sent = hive.admin("send", to="alice", body="please ask bob something")

    # bob's answer wakes alice for a second turn, in the same conversation.
    first, second = hive.wait_turns("alice", 2)
    assert [first["exit_class"], second["exit_class"]] == ["ok", "ok"], hive.diagnosis("alice")
    asked, after_tool, answered = hive.requests_of("alice")

    # 1. The CLI reached the API from inside, with hive's tools from the relay listed.
    assert f"[message #{sent['id']} from operator]" in asked.all_text()
    assert set(asked.tool_names) >= HIVE_TOOLS, asked.tool_names

    # 2. The send went through the relay, as alice: stored, delivered to bob, answered.
    [ping] = [m for m in hive.messages("bob") if m["from"] == "alice"]
    assert ping["body"] == "ping from alice"
    [bob_turn] = hive.wait_turns("bob", 1)
    assert bob_turn["message_ids"] == [ping["id"]]
    hive.wait_until(
        lambda: {m["id"]: m["state"] for m in hive.messages("bob")}[ping["id"]] == "delivered",
        what="bob's copy delivered",
    )
    assert f"sent to bob as message #{ping['id']}" in after_tool.all_text()

    # 3. The next turn continues the conversation: one session, its file the sandbox's.
    assert "please ask bob something" in answered.all_text()
    assert "pong: ping from alice" in answered.all_text()
    session = session_of(hive, first)
    assert session_of(hive, second) == session
    processes = [hive.of(int(t["id"]), "process")[0] for t in (first, second)]
    assert [p["persistent"] for p in processes] == [persistent] * 2
    assert (processes[0]["pid"] == processes[1]["pid"]) is persistent
    uid = hive.agent_dir("alice").lstat().st_uid
    assert uid != 0 and uid_slot(uid) is not None
    # The CLI's config dir and transcript are the sandbox uid's, and the transcript holds
    # the first turn too: a config dir root made after prepare() kept the CLI from saving
    # it, and each new process then started the conversation afresh.
    config_dir = hive.agent_dir("alice") / "state" / "claude"
    transcript = session_file(hive, "alice", session, "please ask bob something")
    assert config_dir.stat().st_uid == transcript.stat().st_uid == uid


def plant_peek(hive: ClaudeHive, bob_transcript: Path) -> None:
    """A shell script in alice's work dir that tries what a claude agent must not reach
    from its sandbox. A script, because the CLI's own permission check refuses
    ``cat <those paths>`` even with ``cat *`` allowed: here the sandbox alone must stop
    the reads."""
    state = hive.state_dir
    targets = [state / "hive.db", state / "operator-token", bob_transcript]
    work = hive.agent_dir("alice") / "work"
    hive.wait_until(work.is_dir, what="alice's work dir")
    script = "".join(f"cat {t}\n" for t in targets) + f"ls {state / 'agents'}\n"
    (work / "peek.sh").write_text(script)


def test_a_claude_agent_s_bash_in_bwrap_reaches_no_other_conversation_nor_the_hive_s_files(
    start: Callable[..., ClaudeHive], api: FakeAnthropic
) -> None:
    """The model's own Bash tool, run by the CLI inside alice's sandbox, tries to read bob's
    conversation (what the operator told him), the db that stores every message and the
    operator token: none of them is there, and no secret reaches alice's model."""
    hive = start(
        in_bwrap("alice", bash_allow=["sh peek.sh"]),
        in_bwrap("bob"),
        dashboard_port=free_port(),  # the dashboard writes the operator token
    )
    secret = "the launch code is 7-4-1-bob-only"
    hive.admin("send", to="bob", body=secret)
    [bob_turn] = hive.wait_turns("bob", 1)
    bob_transcript = session_file(hive, "bob", session_of(hive, bob_turn), secret)
    token = (hive.state_dir / "operator-token").read_text().strip()
    assert token

    plant_peek(hive, bob_transcript)
    command = "sh peek.sh"
    api.script(ToolUse("Bash", {"command": command, "description": "look around"}), Text("ok"))
    hive.admin("send", to="alice", body="look around")
    [turn] = hive.wait_turns("alice", 1)
    assert turn["exit_class"] == "ok", hive.diagnosis("alice")

    [call] = hive.of(int(turn["id"]), "tool_call")
    assert call["name"] == "Bash" and call["input"]["command"] == command
    _, after_bash = hive.requests_of("alice")
    [result] = after_bash.tool_results()
    content = result["content"]
    output = content if isinstance(content, str) else "\n".join(b["text"] for b in content)
    for hidden in ("hive.db", "operator-token", bob_transcript.name):
        assert f"{hidden}: No such file or directory" in output, output
    # The state dir is an empty mask but for the path down to alice's own dir.
    assert output.splitlines()[-1] == "alice", output
    for request in hive.requests_of("alice"):
        text = json.dumps(request.body)
        assert secret not in text and token not in text
