"""ProcessSpec: what to run for a turn, before and after a sandbox wraps it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

# What an agent's process inherits from the supervisor: enough to run programs, nothing
# that could carry the operator's secrets.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")


def base_environment() -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


@dataclass(frozen=True)
class AgentPaths:
    """Where one agent's files live on the host.

    ``state`` is the agent's own writable directory (notes, claude config, model file);
    ``work`` is the directory the agent works in (its cwd); ``socket`` is its agent socket.
    """

    name: str
    root: Path  # <hive state>/agents/<name>
    socket: Path  # <run dir>/agents/<name>.sock
    hive_state: Path  # the hive's own state dir (db, every agent): hidden from sandboxes

    @classmethod
    def for_agent(cls, name: str, hive_state: Path, sockets_dir: Path) -> AgentPaths:
        hive_state = hive_state.resolve()
        return cls(
            name, hive_state / "agents" / name, sockets_dir / "agents" / f"{name}.sock", hive_state
        )

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    def ensure(self) -> None:
        """Create the agent's directories; a link in place of one is refused (OSError),
        never followed: the agent owns ``root`` and may have planted it."""
        from hive import safefs

        self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.state, self.work, self.config):
            safefs.makedirs(self.root, d.name)


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: argv, its whole environment, working directory, stdin bytes.

    ``env`` is complete: the turn runner adds nothing from the supervisor's environment."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stdin: bytes | None = None
    keep_stdin_open: bool = False  # a persistent session: later turns are written to stdin

    def with_argv(self, argv: tuple[str, ...]) -> ProcessSpec:
        return replace(self, argv=argv)
