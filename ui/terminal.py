"""The browser terminal: a websocket attached to a PTY running a shell in the agent's
sandbox, in its work dir.

Protocol: the browser sends text frames of JSON, ``{"t": "i", "d": "ls\\r"}`` (input) or
``{"t": "r", "c": 120, "r": 30}`` (resize); the server sends the PTY's output as binary
frames. Closing the socket hangs the shell up (SIGHUP to its process group, then SIGKILL).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import termios
from typing import Any

import trio
from quart import websocket

from hive.config import AgentConfig
from hive.io.spawn import open_process
from hive.process import AgentPaths, ProcessSpec
from hive.sandboxes import SandboxError, get_sandbox

log = logging.getLogger(__name__)

HANGUP_GRACE_SECONDS = 1.0
READ_BYTES = 64 * 1024


def set_size(fd: int, cols: int, rows: int) -> None:
    cols, rows = max(2, min(cols, 1000)), max(2, min(rows, 1000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def shell_spec(agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
    shell = os.environ.get("HIVE_TERMINAL_SHELL") or shutil.which("bash") or "/bin/sh"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(paths.state),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TERM": "xterm-256color",
        "HIVE_AGENT": agent.name,
        "PS1": f"{agent.name}:\\w\\$ ",
    }
    spec = ProcessSpec(argv=(shell, "--norc", "-i"), env=env, cwd=paths.work)
    sandbox = get_sandbox(agent.sandbox)
    sandbox.prepare(agent, paths)  # idempotent: what a first turn would have set up
    wrapped = sandbox.wrap(spec, agent, paths)
    # setsid -c: a session of its own with the PTY as controlling terminal, so ^C and job
    # control work, and one killpg ends everything the operator started.
    return wrapped.with_argv(("setsid", "-c", *wrapped.argv))


class TerminalSession:
    """One operator shell on a PTY in an agent's sandbox, tied to a websocket."""

    def __init__(self, agent: AgentConfig, paths: AgentPaths) -> None:
        self.agent = agent
        self.paths = paths
        self.cancel = trio.CancelScope()

    def close(self) -> None:
        self.cancel.cancel()

    async def run(self) -> None:
        paths = self.paths
        try:
            # prepare() may create and chown directories: off the trio thread.
            spec = await trio.to_thread.run_sync(shell_spec, self.agent, paths)
        except (SandboxError, OSError) as exc:
            await websocket.send(f"cannot open a terminal for {self.agent.name}: {exc}\r\n")
            await websocket.close(1011)
            return
        master, slave = os.openpty()
        set_size(master, 80, 24)
        try:
            process = await open_process(
                list(spec.argv),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=str(spec.cwd or paths.work),
                env=spec.env,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        pty = trio.lowlevel.FdStream(master)
        log.info("terminal for %s opened (pid %s)", self.agent.name, process.pid)
        try:
            with self.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump_out, pty, nursery.cancel_scope)
                    nursery.start_soon(self._pump_in, pty, master, nursery.cancel_scope)
                    await process.wait()
                    # Let the last output drain before closing.
                    with trio.move_on_after(0.2):
                        await trio.sleep_forever()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await _hang_up(process)
                await pty.aclose()
            log.info("terminal for %s closed", self.agent.name)

    async def _pump_out(self, pty: trio.lowlevel.FdStream, scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await pty.receive_some(READ_BYTES)
                if not data:
                    break
                await websocket.send(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # EIO: the shell is gone
        scope.cancel()

    async def _pump_in(
        self, pty: trio.lowlevel.FdStream, master: int, scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                raw = await websocket.receive()
                msg: Any = json.loads(raw) if isinstance(raw, str) else {"t": "i", "d": raw}
                if not isinstance(msg, dict):
                    continue
                if msg.get("t") == "i":
                    data = msg.get("d", "")
                    await pty.send_all(data.encode() if isinstance(data, str) else bytes(data))
                elif msg.get("t") == "r":
                    set_size(master, int(msg.get("c", 80)), int(msg.get("r", 24)))
        except (ValueError, TypeError, OSError, trio.BrokenResourceError):
            pass
        scope.cancel()


async def _hang_up(process: trio.Process) -> None:
    if process.returncode is not None:
        return
    for sig in (signal.SIGHUP, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with trio.move_on_after(HANGUP_GRACE_SECONDS):
            await process.wait()
            return
