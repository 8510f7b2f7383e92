"""The runtime interface: how one turn of an agent becomes a process and a stream of events.

A runtime is a small plugin (scripted, claude) chosen per agent in hive.toml. The turn
runner (hive.io.turns) starts ``build(turn)`` through the agent's sandbox, feeds each stdout
line to ``parse_line`` and, when the process exits, asks ``classify`` how the turn ended.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hive.process import AgentPaths, ProcessSpec
from hive.wire import Envelope

if TYPE_CHECKING:  # not at run time: the scripted agent's process starts without pydantic
    from hive.config import AgentConfig, HiveConfig


class ExitClass(enum.StrEnum):
    """How a turn ended, which decides what the agent does next."""

    OK = "ok"
    NEEDS_LOGIN = "needs_login"  # 401/403/"Not logged in": park, never a crash
    RATE_LIMITED = "rate_limited"  # 429/529/usage limit: back off, not a crash
    COMPACT_RETRY = "compact_retry"  # context too long: compact and retry
    CRASH = "crash"  # anything else: counts toward restart intensity
    CANCELLED = "cancelled"  # the operator cancelled the turn
    # The supervisor could not start it (no fds, memory or processes left, a full disk):
    # the hive's trouble, not the agent's, so back off and retry, never a crash.
    NO_RESOURCES = "no_resources"


@dataclass(frozen=True)
class TurnInput:
    """Everything a runtime needs to build one turn: settings, agent, paths and messages."""

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
    """How a turn ended (``classify``): its exit class, a detail for the log, the exit code."""

    exit_class: ExitClass
    detail: str = ""
    exit_code: int | None = None


class OneShotError(RuntimeError):
    """A one-shot question got no usable answer; the message says what came back."""


class OneShot(Protocol):
    """A runtime that can ask its model one tool-less question in an agent's environment
    (notes compaction asks it to rewrite the notes)."""

    def build_oneshot(
        self, turn: TurnInput, system: str, prompt: str, model: str = ""
    ) -> ProcessSpec:
        """The process that answers ``prompt`` on stdout (before the sandbox wraps it)."""
        ...

    def oneshot_answer(self, stdout: bytes) -> str:
        """The answer's text in that process's stdout; OneShotError when there is none."""
        ...


class Login(Protocol):
    """A runtime whose agents log in to their model's service (``hive.cli.login``)."""

    def login_spec(
        self, hive: HiveConfig, agent: AgentConfig, paths: AgentPaths, method: str
    ) -> ProcessSpec:
        """The interactive login, run on the operator's terminal in the agent's environment;
        ValueError for a ``method`` this runtime does not know."""
        ...

    def store_login_token(self, paths: AgentPaths, token: str) -> Path:
        """Keep a token the operator pasted as the agent's credential; return where."""
        ...


class Runtime(Protocol):
    """How one turn of an agent becomes a process and a stream of events (module docstring).

    A runtime is registered by name (``hive.plugins.RUNTIMES``) and asked, beside the turns,
    for what it can do: ``oneshot()`` and ``login()`` answer None when it cannot, and
    ``preflight`` checks its agents before the hive starts. ``RuntimeDefaults`` gives those
    answers (None, None, no problems) to a runtime that only plays turns:

    >>> class Echo(RuntimeDefaults):
    ...     name = "echo"
    ...     def build(self, turn: TurnInput) -> ProcessSpec:
    ...         return ProcessSpec(argv=("echo", "hi"))
    ...     def parse_line(self, line: bytes) -> list[TurnEvent]:
    ...         return [TurnEvent("text", {"text": line.decode().strip()})]
    ...     def classify(self, returncode, events, stderr_tail):
    ...         return TurnOutcome(ExitClass.OK if returncode == 0 else ExitClass.CRASH)
    >>> rt: Runtime = Echo()
    >>> rt.parse_line(b"hi\\n")[0].data, rt.classify(0, [], "").exit_class
    ({'text': 'hi'}, <ExitClass.OK: 'ok'>)
    >>> rt.oneshot() is None and rt.login() is None
    True
    """

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

    def oneshot(self) -> OneShot | None:
        """How to ask this runtime's model one question; None: it cannot (no compaction)."""
        ...

    def login(self) -> Login | None:
        """How this runtime's agents log in; None: they never need to."""
        ...

    def preflight(
        self, hive: HiveConfig, agents: Sequence[AgentConfig], environ: Mapping[str, str]
    ) -> list[str]:
        """Before the hive starts: one line per problem that would stop these agents (a
        missing binary, no credential), naming them and the fix; empty: good to go."""
        ...


class RuntimeDefaults:
    """The optional parts of Runtime for a runtime that only plays turns: no one-shot
    questions, no login, nothing to check before the start."""

    def oneshot(self) -> OneShot | None:
        return None

    def login(self) -> Login | None:
        return None

    def preflight(
        self, hive: HiveConfig, agents: Sequence[AgentConfig], environ: Mapping[str, str]
    ) -> list[str]:
        return []


def helper_python(hive: HiveConfig) -> tuple[str, dict[str, str]]:
    """How hive's own helpers (the scripted agent, hive-mcp) start, decided here alone: the
    interpreter that runs ``-m <module>``, and the environment it needs to import hive.

    The interpreter is ``agent_python`` from hive.toml, else the supervisor's own. Either
    way PYTHONPATH names where hive and every package it needs are installed, since the
    interpreter alone may not know: Nix's buildPythonApplication runs hive-supervisor on a
    bare python whose script adds those directories itself. PYTHONSAFEPATH keeps the
    helper's working directory (the agent's own) off its import path.
    """
    extra = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    paths = _import_order([*install_dirs(tuple(sys.path)), *(p for p in extra if p)])
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONSAFEPATH": "1"}
    return hive.agent_python or sys.executable, env


@functools.lru_cache(maxsize=4)
def install_dirs(search_path: tuple[str, ...]) -> tuple[str, ...]:
    """The directories that hold hive and every distribution it needs (its requirements,
    recursively, as installed on ``search_path``), in import order."""
    from importlib import metadata

    import hive as hive_pkg

    dirs = {os.path.dirname(os.path.dirname(os.path.abspath(hive_pkg.__file__)))}
    todo, seen = ["hive"], set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python, not installed here
        dirs.add(os.path.abspath(str(dist.locate_file(""))))
        for requirement in dist.requires or ():
            found = _REQUIREMENT_NAME.match(requirement)
            if found and "extra ==" not in requirement.partition(";")[2]:
                todo.append(found.group())
    return tuple(_import_order(dirs))


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _import_order(paths: Iterable[str]) -> list[str]:
    """``paths`` without repeats, in the order ``sys.path`` searches them (others last)."""
    rank = {os.path.abspath(p): i for i, p in reversed(list(enumerate(sys.path)))}
    unique = dict.fromkeys(os.path.abspath(p) for p in paths)
    return sorted(unique, key=lambda p: rank.get(p, len(rank)))


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
