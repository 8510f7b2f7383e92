"""agent.log is written by the root supervisor, so no limit of the agent's own applies to it:
it is rotated at a cap, and the rotation cannot be turned against a host file."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import trio
import trio.testing

from hive.io.streams import agent_log, log_stderr

CAP = 10_000


async def feed(log_path: Path, total: int) -> None:
    send, receive = trio.testing.memory_stream_pair()
    line = b"e" * 99 + b"\n"

    async def write() -> None:
        for _ in range(total // len(line)):
            await send.send_all(line)
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await log_stderr(receive, deque(maxlen=4), log_path, lambda: 7, max_bytes=CAP)


def test_a_flood_of_stderr_keeps_at_most_two_capped_files(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    trio.run(feed, log_path, 50 * CAP)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["agent.log", "agent.log.1"]
    longest = 200  # one stamped line past the cap
    assert all(p.stat().st_size <= CAP + longest for p in tmp_path.iterdir())
    assert "turn=7 eee" in log_path.read_text()


def test_rotation_replaces_a_planted_link_and_never_writes_through_it(tmp_path: Path) -> None:
    host = tmp_path / "host-secret"
    host.write_text("host secret\n")
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "agent.log.1").symlink_to(host)  # where the rotation will put the old log
    log_path = agent_dir / "agent.log"
    log_path.write_text("x" * (CAP + 1))
    agent_log(log_path, "after the cap", max_bytes=CAP)
    assert host.read_text() == "host secret\n"
    assert not (agent_dir / "agent.log.1").is_symlink()
    assert (agent_dir / "agent.log.1").read_text() == "x" * (CAP + 1)
    assert "after the cap" in log_path.read_text()
