"""The host's stalls while a latency benchmark runs: a bare process beside it, same seconds.

A latency tail of a few milliseconds on a shared 2-core machine may be the host's, not the
code's: a thread woken while both cores run someone else's work waits for a time slice, and
an fsync queued behind other processes' writes takes tens of milliseconds. The limits in
``bench.limits`` are measured before a run, so they cannot show a stall during it. This
probe runs *during* it, in its own process, with no Python threads and no hive code:

- every 1 ms it sleeps and records how late it woke (scheduling delay, the floor under
  every thread hop the hive's messages take);
- every 20 ms it commits one row, WAL and synchronous=FULL, in its own file on the same
  disk (the floor under every commit; at 50/s it adds a twentieth of the hive's own).

    probe = StallProbe.start(seconds)   # ... run the benchmark ...
    print(probe.result().line())
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import apsw

import bench.common  # noqa: F401  (puts the repository on sys.path)

WAKE_EVERY_S = 0.001
COMMIT_EVERY_S = 0.020


@dataclass(frozen=True)
class Stalls:
    wake_late_p99_ms: float
    wake_late_max_ms: float
    commit_p99_ms: float
    commit_max_ms: float

    def line(self) -> str:
        return (
            f"a bare process beside it, same seconds: woke late p99 "
            f"{self.wake_late_p99_ms:.3f} ms, max {self.wake_late_max_ms:.1f} ms; one 1-row "
            f"FULL commit every {COMMIT_EVERY_S * 1000:.0f} ms p99 {self.commit_p99_ms:.3f} ms, "
            f"max {self.commit_max_ms:.1f} ms"
        )


class StallProbe:
    """The probe's process, started before the benchmark's run and read after it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, seconds: float) -> StallProbe:
        cmd = [sys.executable, "-m", "bench.stall_probe", str(seconds)]
        return cls(subprocess.Popen(cmd, stdout=subprocess.PIPE))

    def result(self) -> Stalls:
        out, _ = self.proc.communicate(timeout=600)
        return Stalls(**json.loads(out))


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def probe(seconds: float) -> Stalls:
    late: list[float] = []
    commits: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        conn = apsw.Connection(str(Path(tmp) / "probe.db"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT)")
        end = time.perf_counter() + seconds
        next_commit = time.perf_counter()
        i = 0
        while (now := time.perf_counter()) < end and i < 10_000_000:
            time.sleep(WAKE_EVERY_S)
            woke = time.perf_counter()
            late.append((woke - now - WAKE_EVERY_S) * 1000)
            if woke >= next_commit:
                i += 1
                with conn:
                    conn.execute("INSERT INTO m VALUES (?, ?)", (i, "x" * 64))
                commits.append((time.perf_counter() - woke) * 1000)
                next_commit = woke + COMMIT_EVERY_S
        conn.close()
    return Stalls(_pct(late, 99), max(late), _pct(commits, 99), max(commits))


if __name__ == "__main__":
    print(json.dumps(probe(float(sys.argv[1])).__dict__))
