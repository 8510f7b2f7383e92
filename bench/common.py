"""Shared bits of the benchmarks: a real supervisor in its own process, and percentiles."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.hive_harness import RunningHive  # noqa: E402

__all__ = ["ROOT", "RunningHive", "percentile", "ratio"]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(measured: float, limit: float) -> str:
    return f"{measured / limit:.2f}x" if limit else "n/a"
