"""The process behind the scripted runtime: plays one turn of a scripted agent.

Reads its turn (messages, script) as JSON on stdin, acts through its agent socket
($HIVE_SOCKET) with the same ops hive-mcp uses, and prints one JSON event per line.
See hive.runtimes.scripted for the script format.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hive.client import HiveError, SyncClient

MAX_RECV_DEPTH = 8


def emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


class Player:
    """Plays one turn of an agent's script: each incoming message against the rules, and
    the counters of ``times = N`` steps kept in the agent's state dir."""

    def __init__(self, turn: dict[str, Any], client: SyncClient) -> None:
        self.turn = turn
        self.client = client
        self.agent = str(turn["agent"])
        self.state_path = Path(turn["state_dir"]) / "script-state.json"
        try:
            self.counters: dict[str, int] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            self.counters = {}

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.counters))
        os.replace(tmp, self.state_path)

    def bump(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        self.save()
        return self.counters[key]

    def fmt(self, template: Any, ctx: dict[str, Any]) -> str:
        values: defaultdict[str, Any] = defaultdict(str, ctx)
        return str(template).format_map(values)

    def call(self, op: str, **args: Any) -> Any:
        emit("tool_call", name=op, input=args)
        try:
            result = self.client.call(op, **args)
        except HiveError as exc:
            emit("tool_result", name=op, is_error=True, error=exc.message, code=exc.code)
            return None
        emit("tool_result", name=op, is_error=False, result=result)
        return result

    def run_steps(
        self, steps: list[dict[str, Any]], key: str, ctx: dict[str, Any], depth: int
    ) -> None:
        for i, step in enumerate(steps):
            step_key = f"{key}.{i}"
            if "times" in step:
                done = self.counters.get(step_key, 0)
                if done >= int(step["times"]):
                    continue
                self.bump(step_key)
            ctx["count"] = self.bump(f"{step_key}.count")
            self.run_step(step, ctx, depth)

    def run_step(self, step: dict[str, Any], ctx: dict[str, Any], depth: int) -> None:
        op = step.get("op")
        if op == "reply":
            self.call(
                "send", to=ctx.get("from") or "operator", body=self.fmt(step.get("body", ""), ctx)
            )
        elif op == "send":
            self.call(
                "send", to=self.fmt(step["to"], ctx), body=self.fmt(step.get("body", ""), ctx)
            )
        elif op == "forward":
            self.call("send", to=self.fmt(step["to"], ctx), body=str(ctx.get("body", "")))
        elif op == "set_status":
            self.call("set_status", text=self.fmt(step.get("text", ""), ctx))
        elif op == "kick":
            self.call(
                "kick_agent",
                name=self.fmt(step["name"], ctx),
                note=self.fmt(step.get("note", ""), ctx),
            )
        elif op == "recv":
            # Past the depth limit it takes nothing: a message it took it must handle.
            if depth < MAX_RECV_DEPTH:
                result = self.call("recv", wait_seconds=float(step.get("wait", 0)))
                for msg in (result or {}).get("messages", []):
                    self.handle_message(msg, depth + 1)
        elif op == "sleep":
            time.sleep(float(step.get("seconds", 0)))
        elif op == "text":
            emit("text", text=self.fmt(step.get("text", ""), ctx))
        elif op == "stderr":  # raw bytes (hex) or a template; no newline is added
            text = step.get("text", "")
            data = bytes.fromhex(step["hex"]) if "hex" in step else self.fmt(text, ctx).encode()
            sys.stderr.buffer.write(data * int(step.get("repeat", 1)))
            sys.stderr.buffer.flush()
        elif op == "crash":
            code = int(step.get("code", 1))
            print(f"scripted crash of {self.agent}: {self.fmt(step.get('message', 'boom'), ctx)}",
                  file=sys.stderr, flush=True)  # fmt: skip
            sys.exit(code)
        elif op == "exit":
            code = int(step.get("code", 0))
            cls = step.get("class")
            if cls:
                emit("result", exit_class=cls, detail=self.fmt(step.get("detail", ""), ctx))
            sys.exit(code)
        else:
            emit("error", message=f"unknown script op {op!r}")

    def handle_message(self, msg: dict[str, Any], depth: int = 0) -> None:
        emit("message", id=msg.get("id"), sender=msg.get("from"), body=msg.get("body"))
        ctx = {
            "from": msg.get("from", ""),
            "body": msg.get("body", ""),
            "id": msg.get("id", ""),
            "agent": self.agent,
            "turn": self.turn.get("turn_id", ""),
        }
        for r, rule in enumerate(self.turn.get("script") or []):
            match = str(rule.get("match", "*"))
            sender = str(rule.get("from", "*"))
            if match != "*" and match not in str(msg.get("body", "")):
                continue
            if sender != "*" and sender != msg.get("from"):
                continue
            self.run_steps(list(rule.get("do", [])), f"rule{r}", ctx, depth)
            return

    def play(self) -> None:
        emit(
            "init", agent=self.agent, turn_id=self.turn.get("turn_id"), model=self.turn.get("model")
        )
        if self.turn.get("kick_note") is not None:
            ctx = {"agent": self.agent, "body": self.turn["kick_note"], "from": "",
                   "turn": self.turn.get("turn_id", "")}  # fmt: skip
            self.run_steps(list(self.turn.get("on_kick") or []), "kick", ctx, 0)
        for msg in self.turn.get("messages") or []:
            self.handle_message(msg)
        emit("result", exit_class="ok")


def main() -> None:
    turn = json.loads(sys.stdin.read() or "{}")
    with SyncClient(os.environ["HIVE_SOCKET"]) as client:
        Player(turn, client).play()


if __name__ == "__main__":
    main()
