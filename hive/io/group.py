"""A runtime process in a process group of its own: start it, read its output until it
exits, and leave nothing of its group behind (used by one-shot turns, hive.io.turns, and
persistent sessions, hive.io.sessions)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence

import trio

from hive.io.spawn import open_process
from hive.io.streams import signal_group
from hive.process import ProcessSpec


async def open_group(spec: ProcessSpec, *, stdin_pipe: bool) -> trio.Process:
    """Start ``spec`` as the leader of a new session (so a signal to its group reaches the
    MCP servers and tools it starts), stdout and stderr piped; stdin piped or /dev/null."""
    return await open_process(
        list(spec.argv),
        stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(spec.cwd) if spec.cwd else None,
        env=spec.env,  # complete: the runtime chose it (see ProcessSpec)
        start_new_session=True,
    )


async def run_group(process: trio.Process, tasks: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run ``tasks`` (feeding stdin, reading the output) beside ``process`` until it exits,
    then kill its group: what it started and left running (a background command, an MCP
    server slow to exit) ends with it, as in a sandbox's pid namespace, and lets go of the
    output pipes the readers wait on. On shutdown or an error, the group is killed and the
    process waited for, shielded: no process is left behind."""
    try:
        async with trio.open_nursery() as nursery:
            for task in tasks:
                nursery.start_soon(task)
            await process.wait()
            signal_group(process, signal.SIGKILL)
    finally:
        if process.returncode is None:
            signal_group(process, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await process.wait()
