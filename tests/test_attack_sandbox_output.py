"""What a process run for an agent prints is the agent's: run_captured (notes compaction's
one-shot CLI, in the agent's sandbox with its CLI config and env) keeps a bounded amount."""

from __future__ import annotations

import signal
import sys

import trio

from hive.io import spawn

FLOOD = 256 << 20  # 256 MiB on each stream, no newline


def test_a_flood_of_output_is_kept_only_up_to_the_cap_and_the_process_still_ends() -> None:
    script = (
        "import sys\n"
        "block = b'x' * (1 << 20)\n"
        f"for _ in range({FLOOD >> 20}):\n"
        "    sys.stdout.buffer.write(block); sys.stderr.buffer.write(block)\n"
    )

    async def main() -> spawn.Finished:
        return await spawn.run_captured(
            [sys.executable, "-c", script],
            stdin=None,
            env={},
            cwd=None,
            on_cancel=lambda p: p.send_signal(signal.SIGKILL),
        )

    done = trio.run(main)
    assert done.returncode == 0  # read to the end: it never blocked on a full pipe
    assert len(done.stdout) == spawn.MAX_CAPTURED_BYTES  # before: all 256 MiB, held
    assert len(done.stderr) == spawn.MAX_CAPTURED_BYTES
