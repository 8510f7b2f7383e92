"""The README's main job: ``./dev demo`` runs a hive whose agents exchange work, and Ctrl-C
ends it cleanly (no traceback, no process or socket left behind)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path


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


def test_the_demo_runs_agents_that_talk_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hive.cli.demo", "--state-dir", str(state), "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        seen = read_until(proc, b"alice \xe2\x86\x92 manager: done with", timeout=60)
        assert b"manager \xe2\x86\x92 alice: task 1" in seen
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert b"hive stopped" in rest and b"Traceback" not in rest, rest.decode()
    assert not (state / "run" / "admin.sock").exists()
