"""A real hive for tests: hive-supervisor in its own process, on a real state dir.

    hive = RunningHive.start(tmp_path, CONFIG)
    hive.admin("kick", names=["alice"])
    hive.wait_until(lambda: hive.status("alice")["inbox_depth"] == 0)
    hive.kill()          # SIGKILL, as a crash would
    hive = hive.restart()

Waiting is done by polling the daemon's own answers with a deadline, never by sleeping a
fixed time and hoping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import apsw

from hive.client import HiveError, SyncClient

T = TypeVar("T")

START_TIMEOUT = 30.0
DAEMON_MODULE = "hive.cli.supervisor"  # what `python -m` runs; tests may swap in a wrapper


def trio_idle_timeout() -> float:
    """How long trio keeps an idle worker thread (10 s in trio 0.35; not configurable)."""
    from trio._core._thread_cache import IDLE_TIMEOUT

    return float(IDLE_TIMEOUT)


class Timeout(AssertionError):
    pass


def wait_until(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", poll: float = 0.02
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (HiveError, OSError) as exc:
            last_error = exc
            value = None  # type: ignore[assignment]
        if value:
            return value
        time.sleep(poll)
    raise Timeout(f"timed out after {timeout:g}s waiting for {what} (last error: {last_error})")


@dataclass
class RunningHive:
    root: Path
    config_text: str
    process: subprocess.Popen[bytes]
    extra_env: dict[str, str] = field(default_factory=dict)
    dashboard_port: int | None = None  # None: started with --no-dashboard
    module: str = DAEMON_MODULE

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config_path(self) -> Path:
        return self.root / "hive.toml"

    @property
    def admin_path(self) -> Path:
        return self.state_dir / "run" / "admin.sock"

    @property
    def log_path(self) -> Path:
        return self.root / "supervisor.log"

    def agent_socket(self, name: str) -> Path:
        return self.state_dir / "run" / "agents" / f"{name}.sock"

    @classmethod
    def start(
        cls,
        root: Path,
        config_text: str,
        env: dict[str, str] | None = None,
        dashboard_port: int | None = None,
        module: str = DAEMON_MODULE,
    ) -> RunningHive:
        root.mkdir(parents=True, exist_ok=True)
        (root / "hive.toml").write_text(config_text)
        return cls._spawn(root, config_text, env or {}, dashboard_port, module)

    @classmethod
    def _spawn(
        cls,
        root: Path,
        config_text: str,
        env: dict[str, str],
        dashboard_port: int | None = None,
        module: str = DAEMON_MODULE,
    ) -> RunningHive:
        log = open(root / "supervisor.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--config",
                str(root / "hive.toml"),
                "--state-dir",
                str(root / "state"),
                *(
                    ["--dashboard-port", str(dashboard_port)]
                    if dashboard_port is not None
                    else ["--no-dashboard"]
                ),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        log.close()
        hive = cls(root, config_text, proc, env, dashboard_port, module)
        hive.wait_until(
            lambda: hive.admin("version"), timeout=START_TIMEOUT, what="the supervisor to start"
        )
        return hive

    # --- talking to it ---------------------------------------------------------------------

    def admin(self, op: str, **args: Any) -> Any:
        if self.process.poll() is not None:
            raise AssertionError(
                f"supervisor exited with {self.process.returncode}; log:\n{self.log_tail()}"
            )
        with SyncClient(self.admin_path, timeout=30) as c:
            return c.call(op, **args)

    def agent(self, name: str, timeout: float = 60) -> SyncClient:
        """A connection that acts as agent ``name`` (what its turn process would do)."""
        return SyncClient(self.agent_socket(name), timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("status", name=name)
        return result

    def messages(self, agent: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin("messages", agent=agent, limit=1000)["messages"]
        return result

    def turns(self, agent: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin("turns", agent=agent, limit=1000)["turns"]
        return result

    def wait_until(self, check: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
        def guarded() -> T:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"supervisor exited with {self.process.returncode} while waiting for "
                    f"{what}; log:\n{self.log_tail()}"
                )
            return check()

        return wait_until(guarded, timeout, what or "condition")

    def db(self) -> apsw.Connection:
        """A read-only look at the real database file."""
        return apsw.Connection(str(self.state_dir / "hive.db"), flags=apsw.SQLITE_OPEN_READONLY)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- stopping it ---------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to flush or clean up."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def restart(self) -> RunningHive:
        """Stop (if running) and start again on the same state; returns this same object,
        now holding the new process, so fixtures that stop it stop the right one."""
        if self.process.poll() is None:
            self.terminate()
        fresh = self._spawn(
            self.root, self.config_text, self.extra_env, self.dashboard_port, self.module
        )
        self.process = fresh.process
        return self
