"""Where the time of each message went, from the supervisor's hop stamps (hive.hoptrace)
and the client's send and receive times: per hop p50 / p99 / max, and which hops the
slowest messages spent it in.

    python -m bench.bench_recv_latency --trace
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

from bench.common import percentile

# A message's hops in order; one of "lane" / "to_agent" and at most one "handed" occur.
ORDER = ("sent", "accepted", "committed", "lane", "to_agent", "handed", "replied", "received")


def load(path: Path, client: dict[int, tuple[float, float]]) -> dict[int, dict[str, float]]:
    """Per message id: each hop's time (the first stamp of each), client's times included."""
    hops: dict[int, dict[str, float]] = defaultdict(dict)
    for hop, msg_id, t in json.loads(path.read_text()):
        hops[msg_id].setdefault(hop, t)
    for msg_id, (sent, received) in client.items():
        hops[msg_id].update(sent=sent, received=received)
    return {i: h for i, h in hops.items() if "sent" in h and "received" in h}


def steps(hops: dict[str, float]) -> list[tuple[str, float]]:
    """(from -> to, ms) for each consecutive pair of hops this message passed."""
    seq = [(name, hops[name]) for name in ORDER if name in hops]
    return [(f"{a} -> {b}", (tb - ta) * 1000) for (a, ta), (b, tb) in pairwise(seq)]


def report(path: Path, client: dict[int, tuple[float, float]]) -> list[str]:
    messages = load(path, client)
    if not messages:
        return ["  hop trace: no message had every stamp"]
    total = {i: (h["received"] - h["sent"]) * 1000 for i, h in messages.items()}
    p99 = percentile(list(total.values()), 99)
    per_step: dict[str, list[float]] = defaultdict(list)
    slow_sum: Counter[str] = Counter()
    slow = [i for i, ms in total.items() if ms >= p99]
    for i, hops in messages.items():
        for name, ms in steps(hops):
            per_step[name].append(ms)
            if total[i] >= p99:
                slow_sum[name] += ms
    lines = [f"  hop trace, {len(messages)} messages (ms: p50 / p99 / max; share of the time "
             f"of the {len(slow)} at or over the p99, {p99:.3f} ms):"]  # fmt: skip
    spent = sum(slow_sum.values()) or 1.0
    for name, values in per_step.items():
        lines.append(
            f"    {name:24} {percentile(values, 50):7.3f} {percentile(values, 99):8.3f} "
            f"{max(values):8.2f}   {100 * slow_sum[name] / spent:5.1f}%"
        )
    via_agent = sum(1 for i in slow if "to_agent" in messages[i])
    share = sum(1 for h in messages.values() if "to_agent" in h) / len(messages)
    lines.append(
        f"    no recv parked at the commit (through the Agent): {100 * share:.0f}% of all, "
        f"{via_agent} of the {len(slow)} slowest"
    )
    return lines
