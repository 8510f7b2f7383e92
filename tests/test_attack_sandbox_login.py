"""`hivectl login` runs the claude CLI in the agent's sandbox, on the operator's own
terminal. Whatever runs in that sandbox is the agent's to influence (its CLAUDE_CONFIG_DIR,
HOME, work dir and env are all its own), so it must not be able to type into the
operator's shell: TIOCSTI pushes bytes into a terminal's input queue, and is allowed to a
process whose controlling terminal it is.

Real bwrap, the agent's own uid, run as root; the "operator" is a process with a pty as its
controlling terminal, like a login shell.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

INJECTED = b"touch /tmp/hive-pwned-by-agent\n"

FAKE_CLI = f"""#!/usr/bin/python3
# Stands in for any code the agent gets to run in its login sandbox.
import fcntl, sys, termios
done = 0
for byte in {INJECTED!r}:
    try:
        fcntl.ioctl(0, termios.TIOCSTI, bytes([byte]))
        done += 1
    except OSError as exc:
        print("TIOCSTI refused:", exc, file=sys.stderr)
        break
print("pushed", done, file=sys.stderr)
"""

OPERATOR = """
import sys
from pathlib import Path
from hive.cli.login import run_login
from hive.config import AgentConfig, HiveConfig
root = Path(sys.argv[1])
cfg = HiveConfig(state_dir=root / "state", run_dir=root / "run", claude_bin=sys.argv[2])
try:
    run_login(cfg, AgentConfig("bob", runtime="claude", sandbox="bwrap"), "auth-login")
except Exception as exc:
    print("login:", exc, file=sys.stderr)
"""


@pytest.fixture
def open_root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test proves what the agent's uid can do to root's terminal: run as root")
    root = Path(tempfile.mkdtemp(prefix="hive-login-attack-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def queued_input(slave: int) -> bytes:
    """What sits in the terminal's input queue (what the operator's shell would read)."""
    os.set_blocking(slave, False)
    got = b""
    for _ in range(64):  # bounded: the queue holds at most a few lines
        try:
            chunk = os.read(slave, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                break
            raise
        if not chunk:
            break
        got += chunk
    return got


def test_the_login_sandbox_cannot_type_into_the_operators_terminal(open_root: Path) -> None:
    cli_dir = open_root / "cli"
    cli_dir.mkdir(mode=0o755)
    cli = cli_dir / "claude"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    # The agent's socket, as the daemon would have bound it (bwrap binds it in).
    (open_root / "run" / "agents").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(open_root / "run" / "agents" / "bob.sock"))
    sock.close()
    master, slave = os.openpty()
    try:
        # The operator's hivectl: a session whose controlling terminal is the pty.
        done = subprocess.run(
            ["setsid", "-c", sys.executable, "-c", textwrap.dedent(OPERATOR), str(open_root),
             str(cli)],
            stdin=slave, stdout=slave, stderr=subprocess.PIPE, timeout=120, check=False,
        )  # fmt: skip
        log = done.stderr.decode(errors="replace")
        assert "pushed" in log or "TIOCSTI refused" in log, log  # the fake CLI did run
        assert INJECTED not in queued_input(slave), log  # before: all of it, for root's shell
        assert "TIOCSTI refused" in log, log
    finally:
        os.close(master)
        os.close(slave)
