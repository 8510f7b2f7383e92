"""`./dev bench` reaches every benchmark: each is started the way the script starts it and
gets as far as its argument parser (``--help``), so an import that only works from some
working directory or sys.path fails here, not in the middle of a benchmark run."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py"))


def test_dev_bench_starts_every_benchmark() -> None:
    run = subprocess.run(
        [str(ROOT / "dev"), "bench", "--help"],
        cwd="/",  # the script must not depend on where it is started from
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ModuleNotFoundError" not in run.stderr
    started = [line[len("== bench/") : -len(".py")] for line in run.stdout.splitlines()
               if line.startswith("== bench/")]  # fmt: skip
    assert started == BENCHES
    assert run.stdout.count("usage:") == len(BENCHES), run.stdout[-2000:]
