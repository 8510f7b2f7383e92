"""A small real hive layout for sandbox tests: state dir, db, two agents, live sockets.

Not a conftest: the sandbox tests import it, so it stays out of the other suites' way.
The layout lives under /var/tmp, not pytest's /tmp dir: /tmp is private inside a bwrap
sandbox (which would hide everything trivially) and pytest's base dir is 0700 root, which the
agent's unprivileged uid could not traverse.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec

# Debian's own python3: the venv's interpreter lives under /root, which bwrap hides.
SANDBOX_PYTHON = "/usr/bin/python3"
DB_SECRET = "db-secret-1f6c"
ALICE_SECRET = "alice-notes-9b2e"

# Runs inside the sandbox and reports what it could do, as one JSON line. It first prints
# "ready" and waits for a line on stdin, so the test can inspect it from outside meanwhile.
PROBE = r"""
import json, os, socket, sys
own, other, db, own_sock, other_sock, hive_state, outside = sys.argv[1:8]
print("ready", flush=True)
sys.stdin.readline()

def attempt(fn):
    try:
        return ["ok", fn()]
    except OSError as exc:
        return ["error", exc.errno]

def read(path):
    with open(path) as f:
        return f.read()

def write(path):
    with open(path, "w") as f:
        f.write("x")
    return path

def talk(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"ping")
    reply = s.recv(16).decode()
    s.close()
    return reply

out = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "uid_map": read("/proc/self/uid_map").split(),
    "cwd": os.getcwd(),
    "home": os.environ.get("HOME"),
    "read_other_notes": attempt(lambda: read(other + "/state/notes.md")),
    "list_other": attempt(lambda: os.listdir(other)),
    "list_hive_state": attempt(lambda: os.listdir(hive_state)),
    "read_db": attempt(lambda: read(db)),
    "write_own": attempt(lambda: write(own + "/state/probe.txt")),
    "write_other": attempt(lambda: write(other + "/state/evil.txt")),
    "write_hive_state": attempt(lambda: write(hive_state + "/evil.txt")),
    # Host paths only where a sandbox should stop the write (never unsandboxed as root).
    "write_etc": attempt(lambda: write("/etc/hive-evil.txt")) if outside == "1" else None,
    "write_usr": attempt(lambda: write("/usr/hive-evil.txt")) if outside == "1" else None,
    "write_tmp": attempt(lambda: write("/tmp/hive-probe.txt")) if outside == "1" else None,
    "connect_own": attempt(lambda: talk(own_sock)),
    "connect_other": attempt(lambda: talk(other_sock)),
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
}
try:
    import resource
    out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["nproc"] = list(resource.getrlimit(resource.RLIMIT_NPROC))
except ImportError:
    pass
print(json.dumps(out), flush=True)
"""


class EchoSocket:
    """A listening agent socket that answers every connection's first bytes with "pong"."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                if conn.recv(16):
                    conn.sendall(b"pong")

    def close(self) -> None:
        # shutdown wakes the accept() in the serving thread.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=10)


@dataclass
class HiveLayout:
    base: Path
    state: Path
    run: Path
    bob: AgentPaths
    alice: AgentPaths
    sockets: list[EchoSocket] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.state / "hive.db"

    def probe_args(
        self, me: AgentPaths, other: AgentPaths, *, write_outside: bool = True
    ) -> tuple[str, ...]:
        return (
            SANDBOX_PYTHON, "-c", PROBE,
            str(me.root), str(other.root), str(self.db),
            str(me.socket), str(other.socket), str(self.state),
            "1" if write_outside else "0",
        )  # fmt: skip


def make_layout() -> Iterator[HiveLayout]:
    base = Path(tempfile.mkdtemp(prefix="hive-sandbox-test-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    state, run = base / "state", base / "run"
    state.mkdir()
    bob = AgentPaths.for_agent("bob", state, run)
    alice = AgentPaths.for_agent("alice", state, run)
    layout = HiveLayout(base, state.resolve(), run, bob, alice)
    layout.db.write_text(DB_SECRET)
    os.chmod(layout.db, 0o644)  # as sqlite leaves it with the default umask
    for p in (bob, alice):
        p.ensure()
        layout.sockets.append(EchoSocket(p.socket))
    (alice.state / "notes.md").write_text(ALICE_SECRET)
    try:
        yield layout
    finally:
        for s in layout.sockets:
            s.close()
        shutil.rmtree(base, ignore_errors=True)


def run(
    spec: ProcessSpec, stdin: bytes = b"\n", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        spec.argv,
        cwd=spec.cwd,
        env={**os.environ, **spec.env},
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def probe_result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ready", proc.stdout
    result: dict[str, object] = json.loads(lines[1])
    return result


def agent(name: str, **kw: object) -> AgentConfig:
    return AgentConfig.from_dict({"name": name, **kw})
