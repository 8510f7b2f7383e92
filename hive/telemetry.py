"""Per-agent telemetry (SEED.md item 15): reading the `stats` table the Stats actor writes,
and the summary shown beside the dashboard's charts and by `hivectl stats`."""

from __future__ import annotations

from typing import Any

from hive.store import Queries

STATS_POINTS = 20_000  # rows at most per query


def select_stats(
    q: Queries, agent: str | None, since: float, keys: list[str]
) -> list[tuple[str, float, str, float]]:
    sql = "SELECT agent, ts, key, value FROM stats WHERE ts >= ?"
    params: list[Any] = [since]
    if agent is not None:
        sql += " AND agent IN (?, '')"
        params.append(agent)
    if keys:
        parts = []
        for key in keys:
            if key.endswith("*"):
                parts.append("key LIKE ? ESCAPE '\\'")
                params.append(key[:-1].replace("_", "\\_").replace("%", "\\%") + "%")
            else:
                parts.append("key = ?")
                params.append(key)
        sql += " AND (" + " OR ".join(parts) + ")"
    sql += " ORDER BY ts DESC LIMIT ?"
    params.append(STATS_POINTS)
    rows = [(str(r[0]), float(r[1]), str(r[2]), float(r[3])) for r in q.conn.execute(sql, params)]
    rows.reverse()
    return rows


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summarize(
    rows: list[tuple[str, float, str, float]], since: float, now: float
) -> dict[str, Any]:
    """The figures shown next to the charts (SEED.md item 15), over the window."""
    durations = [v for _, _, k, v in rows if k == "turn.duration"]
    tool_calls = [v for _, _, k, v in rows if k == "turn.tool_calls"]
    exits: dict[str, float] = {"ok": 0, "compact_retry": 0, "failure": 0}
    tools: dict[str, float] = {}
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    depth: list[float] = []
    last_turn: float | None = None
    notes: float | None = None
    for _, ts, key, value in rows:
        if key.startswith("turn.exit."):
            cls = key.removeprefix("turn.exit.")
            bucket = cls if cls in ("ok", "compact_retry") else "failure"
            exits[bucket] += value
            last_turn = ts if last_turn is None else max(last_turn, ts)
        elif key.startswith("tool."):
            tools[key[5:]] = tools.get(key[5:], 0) + value
        elif key.startswith("turn.sent."):
            sent[key[10:]] = sent.get(key[10:], 0) + value
        elif key.startswith("turn.received."):
            received[key[14:]] = received.get(key[14:], 0) + value
        elif key == "inbox_depth":
            depth.append(value)
        elif key == "notes_bytes":
            notes = value
    turns = int(sum(exits.values()))
    minutes = max((now - since) / 60, 1 / 60)
    return {
        "turns": turns,
        "turns_per_min": turns / minutes,
        "duration_p50": percentile(durations, 50),
        "duration_p95": percentile(durations, 95),
        "tool_calls_per_turn": (sum(tool_calls) / len(tool_calls)) if tool_calls else None,
        "exits": exits,
        "inbox_depth": depth[-1] if depth else None,
        "inbox_depth_max": max(depth) if depth else None,
        "seconds_since_last_turn": (now - last_turn) if last_turn is not None else None,
        "notes_bytes": notes,
        "tools": tools,
        "sent": sent,
        "received": received,
    }
