"""The README's main job: ``./dev demo`` runs a hive whose agents exchange work, and Ctrl-C
(SIGINT to its process group) ends it cleanly: exit 0, no traceback, no process left
running, nothing left listening (admin socket, agent sockets, the dashboard's port)."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.ui_harness import free_port


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while needle not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} in the demo's output:\n{out.decode()}"
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"the demo ended early:\n{out.decode()}"
                out += chunk
    return out


DEMO = [sys.executable, "-m", "hive.cli.demo"]


def demo_processes(demo: psutil.Process, state: Path) -> set[psutil.Process]:
    """The demo's descendants, and anything running in one of its agents' directories."""
    found = set(demo.children(recursive=True))
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()).is_relative_to(state):
                found.add(proc)
        except (psutil.Error, OSError):
            continue
    return found


def test_the_demo_runs_agents_that_talk_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    port = free_port()
    proc = subprocess.Popen(
        [*DEMO, "--state-dir", str(state), "--dashboard-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        seen = read_until(proc, b"alice \xe2\x86\x92 manager: done with", timeout=60)
        assert b"manager \xe2\x86\x92 alice: task 1" in seen
        assert f"dashboard: http://127.0.0.1:{port}/".encode() in seen
        started = demo_processes(psutil.Process(proc.pid), state.resolve())
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert b"hive stopped" in rest and b"Traceback" not in rest, rest.decode()
    # Nothing left running: not a turn it started, not anything in its agents' dirs.
    _gone, alive = psutil.wait_procs(list(started), timeout=10)
    assert not alive, alive
    assert not demo_processes(psutil.Process(), state.resolve()) - {psutil.Process()}
    # Nothing left listening: no admin socket, the agents' sockets refuse, the port is free.
    assert not (state / "run" / "admin.sock").exists()
    for path in (state / "run" / "agents").glob("*.sock"):
        with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(str(path))
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
