"""The log viewer's source: journald where the host has it, else the supervisor's own
per-agent log file (``<state>/agents/<name>/agent.log``, written by the turn runner)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from hive.config import HiveConfig
from hive.journal import journal_available, journalctl_argv
from hive.logtail import read_from, tail_lines

POLL_SECONDS = 0.5
READ_CHUNK = 64 * 1024
# The agent writes its log: a line without an end is cut here, and a follower that falls
# this far behind (a sparse jump, a flood) skips ahead instead of streaming it all.
MAX_LINE_BYTES = 64 * 1024
MAX_BEHIND_BYTES = 1 << 20


def log_path(cfg: HiveConfig, agent: str) -> Path:
    return cfg.agent_dir(agent) / "agent.log"


def _journal_line(raw: bytes) -> str | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journald sends non-UTF-8 messages as byte arrays
        message = bytes(message).decode("utf-8", "replace")
    return str(message) if message is not None else None


async def read(cfg: HiveConfig, agent: str, lines: int) -> dict[str, Any]:
    if journal_available():
        result = await trio.run_process(
            journalctl_argv(agent, lines), capture_stdout=True, capture_stderr=True, check=False
        )
        out = [_journal_line(raw) for raw in result.stdout.splitlines()]
        return {"source": "journald", "lines": [line for line in out if line is not None]}
    path = log_path(cfg, agent)
    text, _ = await trio.to_thread.run_sync(tail_lines, path, lines)
    return {"source": "file", "path": str(path), "lines": text}


def _sse(lines: list[str]) -> bytes:
    return f"data: {json.dumps({'lines': lines})}\n\n".encode()


class Follower:
    """New lines of one agent's log, as server-sent events, until closed."""

    def __init__(self, cfg: HiveConfig, agent: str) -> None:
        self.cfg = cfg
        self.agent = agent
        self.cancel = trio.CancelScope()

    def close(self) -> None:
        self.cancel.cancel()

    async def events(self) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        with self.cancel:
            if journal_available():
                async for chunk in self._journal():
                    yield chunk
            else:
                async for chunk in self._file():
                    yield chunk

    async def _file(self) -> AsyncIterator[bytes]:
        path = log_path(self.cfg, self.agent)
        _, offset = await trio.to_thread.run_sync(tail_lines, path, 0)
        partial = b""
        idle = 0.0
        while True:
            # Off the trio thread, and never through a link the agent put in its log's place.
            size, data = await trio.to_thread.run_sync(read_from, path, offset, READ_CHUNK)
            if size < offset:  # truncated or replaced: start over
                offset, partial = 0, b""
                continue
            if size - offset > MAX_BEHIND_BYTES:
                offset, partial = size - MAX_BEHIND_BYTES, b""
                yield _sse([f"[hive: log skipped ahead to its last {MAX_BEHIND_BYTES} bytes]"])
                continue
            if data:
                offset += len(data)
                *complete, partial = (partial + data).split(b"\n")
                if len(partial) > MAX_LINE_BYTES:
                    complete.append(partial[:MAX_LINE_BYTES] + b" [hive: line cut]")
                    partial = b""
                if complete:
                    yield _sse([c.decode("utf-8", "replace") for c in complete])
                    idle = 0.0
                continue
            await trio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= 15:
                idle = 0.0
                yield b": keepalive\n\n"

    async def _journal(self) -> AsyncIterator[bytes]:
        argv = journalctl_argv(self.agent, 0, follow=True)
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                lambda task_status: trio.run_process(
                    argv, stdout=subprocess.PIPE, check=False, task_status=task_status
                )
            )
            try:
                assert process.stdout is not None
                buf = b""
                async for data in process.stdout:
                    *complete, buf = (buf + data).split(b"\n")
                    out = [line for line in map(_journal_line, complete) if line is not None]
                    if out:
                        yield _sse(out)
            finally:
                process.kill()
