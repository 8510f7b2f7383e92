"""The scripted runtime: a real subprocess per turn that plays an agent from a small script.

It talks to its agent socket exactly as hive-mcp does, so it exercises the whole path
(socket, Bus, Store, turn loop) without a model. The script lives in hive.toml:

    [[agent]]
    name = "echo"
    [[agent.script]]          # rules, first match wins for each incoming message
    match = "ping"            # substring of the body ("*" or absent: anything)
    from = "*"                # sender name ("*" or absent: anyone)
    do = [{op = "reply", body = "pong: {body}"}]

Steps (``op``): reply{body}, send{to, body}, forward{to}, set_status{text}, recv{wait},
kick{name, note}, sleep{seconds}, crash{code}, exit{code, class}, stderr{text | hex,
repeat} (writes to stderr as is: no newline added). Any step may carry
``times = N``: it runs only the first N times (counted in the agent's state dir), which
scripts "crash once, then work". Templates: {from} {body} {agent} {id} {turn} {count}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hive.process import ProcessSpec, base_environment
from hive.runtimes.base import (
    ExitClass,
    RuntimeDefaults,
    TurnEvent,
    TurnInput,
    TurnOutcome,
    helper_python,
)


class ScriptedRuntime(RuntimeDefaults):
    """The Runtime of demos and tests: each turn is hive.runtimes.scripted_agent playing the
    agent's script from hive.toml (module docstring); no one-shot questions, no login."""

    name = "scripted"

    def build(self, turn: TurnInput) -> ProcessSpec:
        payload = {
            "agent": turn.agent.name,
            "turn_id": turn.turn_id,
            "model": turn.model,
            "messages": [m.to_wire() for m in turn.messages],
            "kick_note": turn.kick_note,
            "script": list(turn.agent.script),
            "on_kick": list(turn.agent.on_kick),
            "state_dir": str(turn.paths.state),
        }
        python, python_env = helper_python(turn.hive)
        return ProcessSpec(
            argv=(python, "-m", "hive.runtimes.scripted_agent"),
            env={
                **base_environment(),
                **python_env,
                **turn.agent.env,
                "HIVE_SOCKET": str(turn.paths.socket),
                "HIVE_AGENT": turn.agent.name,
            },
            cwd=turn.paths.work,
            stdin=json.dumps(payload).encode(),
        )

    def parse_line(self, line: bytes) -> list[TurnEvent]:
        line = line.strip()
        if not line.startswith(b"{"):
            return []
        try:
            raw = json.loads(line)
        except ValueError:
            return []
        if not isinstance(raw, dict) or "event" not in raw:
            return []
        kind = str(raw.pop("event"))
        return [TurnEvent(kind, raw)]

    def classify(
        self, returncode: int, events: Sequence[TurnEvent], stderr_tail: str
    ) -> TurnOutcome:
        for ev in reversed(events):
            if ev.kind == "result" and ev.data.get("exit_class"):
                try:
                    cls = ExitClass(str(ev.data["exit_class"]))
                except ValueError:
                    break
                return TurnOutcome(cls, str(ev.data.get("detail", "")), returncode)
        if returncode == 0:
            return TurnOutcome(ExitClass.OK, "", 0)
        last = stderr_tail.strip().splitlines()[-1:] if stderr_tail.strip() else []
        detail = f"exit code {returncode}" + (f": {last[0]}" if last else "")
        return TurnOutcome(ExitClass.CRASH, detail, returncode)
