"""A real hive of real claude agents for end-to-end tests.

The supervisor runs in its own process (tests.hive_harness); its claude agents run the REAL
claude CLI (tests.claude_cli), which talks to a FakeAnthropic server in the test process,
and act through the real MCP relay on their real agent sockets::

    with FakeAnthropic() as api:
        hive = ClaudeHive(make_hive(hive_toml(claude_agent("alice")), env=api.env()), api)
        hive.admin("send", to="alice", body="hello")
        [turn] = hive.wait_turns("alice", 1)
        assert "hello" in hive.requests_of("alice")[0].all_text()
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hive.client import HiveError
from tests.claude_cli import claude_bin
from tests.fake_anthropic import FakeAnthropic, RecordedRequest
from tests.hive_harness import RunningHive, Timeout


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def hive_toml(*agents: str, **settings: object) -> str:
    """hive.toml: [hive] settings (claude_bin is the real CLI) and agent blocks."""
    lines = ["[hive]", f"claude_bin = {_toml(claude_bin())}"]
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n" + "\n".join(agents)


def claude_agent(name: str, model: str = "claude-test-model", **fields: object) -> str:
    """One [[agent]] block for a claude agent."""
    lines = ["[[agent]]", f"name = {_toml(name)}", 'runtime = "claude"', f"model = {_toml(model)}"]
    lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def mcp_server(
    name: str, command: str, args: list[str], allowed_tools: list[str], **fields: object
) -> str:
    """An [[agent.mcp_servers]] block for the agent block just before it (``fields``: more
    keys, e.g. ``env``, ``shared``)."""
    return (
        f"[[agent.mcp_servers]]\nname = {_toml(name)}\ncommand = {_toml(command)}\n"
        f"args = {_toml(args)}\nallowed_tools = {_toml(allowed_tools)}\n"
        + "".join(f"{key} = {_toml(value)}\n" for key, value in fields.items())
    )


def scripted_agent(name: str, script: str) -> str:
    """One [[agent]] block for a scripted agent; ``script`` is its [[agent.script]] TOML."""
    return f'[[agent]]\nname = "{name}"\n{script}\n'


@dataclass
class ClaudeHive:
    hive: RunningHive
    api: FakeAnthropic

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hive, name)

    def agent_dir(self, name: str) -> Path:
        return self.hive.state_dir / "agents" / name

    def requests_of(self, name: str) -> list[RecordedRequest]:
        """The model requests that agent's turns made (told apart by the system prompt)."""
        marker = f"You are '{name}', an agent in a hive"
        return [r for r in self.api.requests if marker in r.system_text]

    def ended_turns(self, name: str) -> list[dict[str, Any]]:
        """The agent's ended turns, oldest first."""
        return sorted(
            (t for t in self.hive.turns(name) if t["ended_at"]), key=lambda t: int(t["id"])
        )

    def wait_turns(self, name: str, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until ``n`` turns of the agent have ended; return them, oldest first."""
        try:
            return self.hive.wait_until(
                lambda: t if len(t := self.ended_turns(name)) >= n else None,
                timeout=timeout,
                what=f"{n} ended turn(s) of {name}",
            )
        except Timeout as exc:
            raise Timeout(f"{exc}\n{self.diagnosis(name)}") from None

    def diagnosis(self, name: str) -> str:
        """What a failed wait needs to be understood: turns, status, logs, requests."""
        try:
            turns = "\n".join(str(t) for t in self.hive.turns(name))
            status = str(self.hive.status(name))
        except (HiveError, AssertionError) as exc:
            turns = status = f"(daemon did not answer: {exc})"
        try:
            agent_log = (self.agent_dir(name) / "agent.log").read_text()[-3000:]
        except OSError:
            agent_log = "(no agent log)"
        requests = [(r.model, r.last_user_text()[:80]) for r in self.api.requests]
        return (
            f"turns of {name}:\n{turns}\nstatus: {status}\nrequests: {requests}\n"
            f"agent.log:\n{agent_log}\nsupervisor log:\n{self.hive.log_tail(30)}"
        )

    def transcript(self, turn_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.hive.admin("transcript", turn_id=turn_id)["events"]
        return result

    def of(self, turn_id: int, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.transcript(turn_id) if e["kind"] == kind]

    def pid_of(self, turn_id: int) -> int:
        """The pid that plays the turn (its ``process`` event, waited for)."""
        [process] = self.hive.wait_until(
            lambda: self.of(turn_id, "process"), what=f"turn {turn_id}'s process event"
        )
        return int(process["pid"])

    def running_turn(self, name: str) -> int:
        """The id of the agent's running turn (waited for)."""
        turn_id: int = self.hive.wait_until(
            lambda: self.hive.status(name)["turn_id"], what=f"a running turn of {name}"
        )
        return turn_id

    def events(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.hive.admin("events", agent=name, limit=100)["events"]
        return result


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (zombies count as gone)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


# A scripted peer that answers whatever it gets, for claude agents to talk to.
BOB_ANSWERS = scripted_agent(
    "bob",
    """[[agent.script]]
match = "*"
do = [{op = "reply", body = "pong: {body}"}]""",
)
