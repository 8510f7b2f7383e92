"""Start child processes from one thread that lives as long as the supervisor.

``trio.lowlevel.open_process`` forks in a trio worker thread, and trio ends a worker thread
after 10 s idle. A child that asked the kernel to die with its parent (bwrap's
``--die-with-parent``, i.e. ``PR_SET_PDEATHSIG``) is killed when the *thread* that forked it
exits, not the process: every bwrap turn and terminal died with SIGKILL 10 s after it started.
So every turn, session and terminal process is forked here instead, on a single daemon thread
that never exits before the supervisor does (its death is the parent death those children
are meant to follow).

The returned object is an ordinary ``trio.Process``; only the fork moved.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import trio

_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _spawner_loop() -> None:
    while True:
        _jobs.get()()


def spawner_thread() -> threading.Thread:
    """The thread every child is forked from (started on first use, never stopped)."""
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = threading.Thread(target=_spawner_loop, name="hive-spawner", daemon=True)
            _thread.start()
        return _thread


async def _popen_on_spawner(
    argv: Sequence[str], options: dict[str, Any]
) -> subprocess.Popen[bytes]:
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    outcome: list[subprocess.Popen[bytes] | BaseException] = []

    def job() -> None:
        try:
            outcome.append(subprocess.Popen(list(argv), **options))
        except BaseException as exc:  # handed back to the caller, raised there
            outcome.append(exc)
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    spawner_thread()
    _jobs.put(job)
    # Shielded: a fork takes milliseconds, and a cancel in between would leave a child
    # nobody owns.
    with trio.CancelScope(shield=True):
        await done.wait()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


async def open_process(
    argv: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    **options: Any,
) -> trio.Process:
    """Like ``trio.lowlevel.open_process`` (stdio: ``subprocess.PIPE``, ``DEVNULL``, an fd or
    None), but forked from the spawner thread. Pipes become trio streams on the process."""
    ends: dict[str, Any] = {}
    child_fds: dict[str, int | None] = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
    with ExitStack() as close_child_ends, ExitStack() as close_on_failure:
        for name in ("stdin", "stdout", "stderr"):
            if child_fds[name] != subprocess.PIPE:
                continue
            read_fd, write_fd = os.pipe()  # both close-on-exec: Popen dups the child's end
            ours, theirs = (write_fd, read_fd) if name == "stdin" else (read_fd, write_fd)
            stream = trio.lowlevel.FdStream(ours)
            close_on_failure.callback(stream.close)
            close_child_ends.callback(os.close, theirs)
            ends[name] = stream
            child_fds[name] = theirs
        popen = await _popen_on_spawner(argv, {**options, **child_fds})
        close_on_failure.pop_all()
    # trio.Process has no public constructor; _create is how trio itself builds one
    # around a Popen (see trio.lowlevel.open_process).
    return trio.Process._create(popen, ends.get("stdin"), ends.get("stdout"), ends.get("stderr"))


@dataclass(frozen=True)
class Finished:
    """A finished process: its exit code and what it wrote."""

    returncode: int
    stdout: bytes
    stderr: bytes


async def run_captured(
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    env: dict[str, str],
    cwd: str | None,
    on_cancel: Callable[[trio.Process], None],
) -> Finished:
    """Run a process to its end in a session of its own, forked from the spawner thread;
    return its exit code and output (at most MAX_CAPTURED_BYTES of each stream).
    ``on_cancel`` ends it when the caller is cancelled (a timeout), and the process is
    always waited for."""
    process = await open_process(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    out, err = bytearray(), bytearray()
    try:
        async with trio.open_nursery() as nursery:
            if stdin is not None and process.stdin is not None:
                nursery.start_soon(_feed, process.stdin, stdin)
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_drain, process.stdout, out)
            nursery.start_soon(_drain, process.stderr, err)
            await process.wait()
    finally:
        if process.returncode is None:
            on_cancel(process)
            with trio.CancelScope(shield=True):
                await process.wait()
    returncode = process.returncode if process.returncode is not None else -1
    return Finished(returncode, bytes(out), bytes(err))


async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # it exited without reading: its exit code tells the story
    finally:
        await stream.aclose()


# The most of one stream run_captured keeps. Its processes run in an agent's sandbox, with
# the agent's CLI config and env (a base URL of its choosing): what they print is the
# agent's, and must not grow the daemon without bound. The rest is read and dropped, so
# the process never blocks on a full pipe.
MAX_CAPTURED_BYTES = 16 << 20


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some(65536):
        room = MAX_CAPTURED_BYTES - len(into)
        if room > 0:
            into += chunk[:room]
