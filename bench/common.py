"""Shared bits of the benchmarks: a real supervisor in its own process, and percentiles."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from hive.wire import FrameDecoder  # noqa: E402
from tests.hive_harness import RunningHive  # noqa: E402

__all__ = ["ROOT", "RunningHive", "median", "percentile", "pipeline", "ratio"]


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


async def pipeline(
    path: Path, frames: list[bytes], window: int, on_reply: Any = None
) -> list[dict[str, Any]]:
    """Send ``frames`` keeping ``window`` in flight; return the replies in arrival order.

    A lean client: frames are encoded beforehand and replies decoded in bulk, so the
    figures measure the daemon, not the client (which shares the 2 cores)."""
    stream = await trio.open_unix_socket(str(path))
    decoder = FrameDecoder()
    replies: list[dict[str, Any]] = []
    sent = 0
    async with stream:
        while len(replies) < len(frames):
            burst = min(window - (sent - len(replies)), len(frames) - sent)
            if burst > 0:
                await stream.send_all(b"".join(frames[sent : sent + burst]))
                sent += burst
            data = await stream.receive_some(1 << 16)
            if not data:
                raise RuntimeError("supervisor closed the connection")
            for reply in decoder.feed(data):
                if isinstance(reply, Exception) or not reply.get("ok"):
                    raise RuntimeError(f"request failed: {reply}")
                replies.append(reply)
                if on_reply is not None:
                    on_reply(reply)
    return replies
