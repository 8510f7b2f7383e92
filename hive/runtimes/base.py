"""The runtime interface: how one turn of an agent becomes a process and a stream of events.

A runtime is a small plugin (scripted, claude) chosen per agent in hive.toml. The turn
runner (hive.io.turns) starts ``build(turn)`` through the agent's sandbox, feeds each stdout
line to ``parse_line`` and, when the process exits, asks ``classify`` how the turn ended.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hive.process import AgentPaths, ProcessSpec
from hive.wire import Envelope

if TYPE_CHECKING:  # not at run time: the scripted agent's process starts without pydantic
    from hive.config import AgentConfig, HiveConfig


class ExitClass(enum.StrEnum):
    OK = "ok"
    NEEDS_LOGIN = "needs_login"  # 401/403/"Not logged in": park, never a crash
    RATE_LIMITED = "rate_limited"  # 429/529/usage limit: back off, not a crash
    COMPACT_RETRY = "compact_retry"  # context too long: compact and retry
    CRASH = "crash"  # anything else: counts toward restart intensity
    CANCELLED = "cancelled"  # the operator cancelled the turn


@dataclass(frozen=True)
class TurnInput:
    hive: HiveConfig
    agent: AgentConfig
    paths: AgentPaths
    turn_id: int
    model: str
    messages: tuple[Envelope, ...]
    kick_note: str | None = None
    allowed_tools: tuple[str, ...] = ()
    compact: bool = False  # the previous turn hit the context limit


@dataclass(frozen=True)
class TurnEvent:
    """One thing that happened inside a turn, for the transcript, stats and turn_state.

    kinds: init, text, tool_call, tool_result, usage, error, result; and ``process``, from
    the turn runner itself: the pid that plays the turn, whether it is a persistent session.
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnOutcome:
    exit_class: ExitClass
    detail: str = ""
    exit_code: int | None = None


class Runtime(Protocol):
    name: str

    def build(self, turn: TurnInput) -> ProcessSpec:
        """The process that plays this turn (before the sandbox wraps it)."""
        ...

    def parse_line(self, line: bytes) -> list[TurnEvent]:
        """Events in one line of the process's stdout (none for noise)."""
        ...

    def classify(
        self, returncode: int, events: Sequence[TurnEvent], stderr_tail: str
    ) -> TurnOutcome:
        """How the turn ended, from the exit code, its events and the end of its stderr."""
        ...


def helper_python(hive: HiveConfig) -> tuple[str, dict[str, str]]:
    """The interpreter for hive's in-sandbox helpers, and the environment it needs to
    import hive (only when it is not the supervisor's own interpreter)."""
    if not hive.agent_python:
        return sys.executable, {}
    import msgpack

    import hive as hive_pkg

    paths = {
        str(Path(hive_pkg.__file__).resolve().parents[1]),
        str(Path(msgpack.__file__).parents[1]),
    }
    return hive.agent_python, {"PYTHONPATH": os.pathsep.join(sorted(paths))}


QUOTE = ">"
WAKE_UP = "You were woken up. Check your notes and carry on."


def quote_body(text: str) -> str:
    """``text`` with every line prefixed by ``> ``: the only form a body takes in a prompt.

    Headers (``[message #N from S]``, ``[kick]``) start a line; a body's lines never do, so
    no body can forge a header, whatever it contains. Every line break Python knows
    (``str.splitlines``: \\n, \\r, \\v, \\f, \\x1c-\\x1e, \\x85, U+2028, U+2029) starts a
    new quoted line, so a model that reads any of them as a break still sees a quote.
    """
    return "\n".join(f"{QUOTE} {line}" if line else QUOTE for line in text.splitlines() or [""])


def format_turn_prompt(messages: Sequence[Envelope], kick_note: str | None) -> str:
    """The text a model sees at the start of a turn: its new messages, oldest first.

    Each message is a header line written by hive, then its body quoted (``quote_body``);
    a kick's note, written by the operator or the manager, is quoted the same way.
    """
    parts: list[str] = []
    if kick_note:
        parts.append(f"[kick]\n{quote_body(kick_note)}")
    elif kick_note is not None:
        parts.append(f"[kick] {WAKE_UP}")
    for m in messages:
        label = "event" if m.kind == "event" else "message"
        parts.append(f"[{label} #{m.id} from {m.sender}]\n{quote_body(m.body)}")
    if not parts:
        parts.append(f"[kick] {WAKE_UP}")
    return "\n\n".join(parts)
