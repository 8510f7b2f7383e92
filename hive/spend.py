"""What the fleet costs: tokens and money per turn, per agent and model, and daily budgets.

The claude runtime reports a turn's ``usage`` event (from the CLI's ``result``: input,
output and cache tokens, ``total_cost_usd``). The Agent actor adds it up per turn, writes
one ``turn_usage`` row at the turn's end and adds it to the ``SpendLedger``: today's
totals per agent and for the hive, kept in memory (loaded from the store at boot) so the
Agent can decide at once, without a query, whether it is over budget.

A budget is per UTC day, in dollars or in tokens (``daily_budget_usd``,
``daily_budget_tokens``; 0: none), for one agent (``[[agent]]``) or the whole hive
(``[hive]``). The tokens a budget counts are input + output + cache-creation tokens
(cache reads are cheap and would swamp the count).

>>> u = Usage.from_event({"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25})
>>> (u.budget_tokens, u.cost_usd)
(15, 0.25)
>>> day_of(0.0)
'1970-01-01'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hive.config import AgentConfig, HiveConfig
    from hive.store import Queries

_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def day_of(ts: float) -> str:
    """The UTC day a timestamp falls on: budgets are per UTC day."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def next_day_starts(ts: float) -> float:
    """Unix seconds of the next UTC midnight after ``ts``."""
    return (int(ts) // 86400 + 1) * 86400.0


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars (one turn's, or a sum)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> Usage:
        """A runtime's ``usage`` event; missing or malformed numbers count as 0."""

        def num(key: str) -> int:
            value = data.get(key)
            return int(value) if isinstance(value, int | float) and value > 0 else 0

        cost = data.get("cost_usd")
        tokens = [num(k) for k in _TOKEN_FIELDS]
        dollars = float(cost) if isinstance(cost, int | float) and cost > 0 else 0.0
        return _usage([*tokens, dollars])

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cost_usd + other.cost_usd,
        )

    @property
    def budget_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_input_tokens,
            "cache_creation_tokens": self.cache_creation_input_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def _usage(numbers: Sequence[Any]) -> Usage:
    """A Usage from four token counts and a cost (SQL sums may be NULL)."""
    return Usage(
        int(numbers[0] or 0),
        int(numbers[1] or 0),
        int(numbers[2] or 0),
        int(numbers[3] or 0),
        float(numbers[4] or 0),
    )


class SpendLedger:
    """Today's spend per agent and for the hive, shared by every Agent actor (a lock: they
    run on their own threads). Days other than today are dropped as they pass."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day = ""
        self._agents: dict[str, Usage] = {}

    def _roll(self, day: str) -> None:
        if day != self._day:
            self._day, self._agents = day, {}

    def add(self, agent: str, usage: Usage, ts: float) -> None:
        with self._lock:
            day = day_of(ts)
            if day < self._day:
                return  # a turn of yesterday, counted after midnight: not today's
            self._roll(day)
            self._agents[agent] = self._agents.get(agent, Usage()) + usage

    def today(self, agent: str | None, now: float) -> Usage:
        """The agent's spend today, or the hive's (``agent`` None)."""
        with self._lock:
            self._roll(day_of(now))
            if agent is not None:
                return self._agents.get(agent, Usage())
            total = Usage()
            for usage in self._agents.values():
                total = total + usage
            return total

    def load(self, q: Queries, now: float) -> None:
        """Today's totals from the store (at boot)."""
        since = (int(now) // 86400) * 86400.0
        for agent, *numbers in q.conn.execute(
            "SELECT agent, SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
            "SUM(cache_creation_tokens), SUM(cost_usd) FROM turn_usage WHERE ts >= ? "
            "GROUP BY agent",
            (since,),
        ):
            self.add(str(agent), _usage(numbers), now)


def over_budget(hive: HiveConfig, agent: AgentConfig, ledger: SpendLedger, now: float) -> str:
    """Why ``agent`` may not start another turn today ("" if it may): the first of its own
    and the hive's daily budgets that today's spend has reached."""
    mine, everyone = ledger.today(agent.name, now), ledger.today(None, now)
    checks = (
        (agent.daily_budget_usd, mine.cost_usd, "its daily budget of ${:g}"),
        (agent.daily_budget_tokens, mine.budget_tokens, "its daily budget of {:g} tokens"),
        (hive.daily_budget_usd, everyone.cost_usd, "the hive's daily budget of ${:g}"),
        (
            hive.daily_budget_tokens,
            everyone.budget_tokens,
            "the hive's daily budget of {:g} tokens",
        ),
    )
    for limit, spent, what in checks:
        if limit and spent >= limit:
            return f"spent {spent:.4g} of {what.format(limit)} today (UTC)"
    return ""


# --- the store ---------------------------------------------------------------------------


def insert_usage(q: Queries, turn_id: int, agent: str, model: str, ts: float, usage: Usage) -> None:
    q.conn.execute(
        "INSERT OR REPLACE INTO turn_usage (turn_id, agent, model, ts, input_tokens, "
        "output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (turn_id, agent, model, ts, usage.input_tokens, usage.output_tokens,
         usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.cost_usd),
    )  # fmt: skip


def _sums(q: Queries, group: str, since: float, agent: str | None) -> list[dict[str, Any]]:
    where, args = "ts >= ?", list[Any]([since])
    if agent:
        where += " AND agent = ?"
        args.append(agent)
    rows = q.conn.execute(
        f"SELECT {group}, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
        "SUM(cache_read_tokens), SUM(cache_creation_tokens), SUM(cost_usd) "
        f"FROM turn_usage WHERE {where} GROUP BY {group} ORDER BY {group}",
        args,
    )
    out = []
    for key, turns, *numbers in rows:
        usage = _usage(numbers)
        out.append({"key": key, "turns": int(turns), **usage.to_dict()})
    return out


def summary(q: Queries, now: float, agent: str | None = None) -> dict[str, Any]:
    """Spend today and over the last 7 days, per agent and per model, and per day."""
    today = (int(now) // 86400) * 86400.0
    week = today - 6 * 86400.0
    return {
        "today": day_of(now),
        "agents_today": _sums(q, "agent", today, agent),
        "agents_7d": _sums(q, "agent", week, agent),
        "models_7d": _sums(q, "model", week, agent),
        "days": _sums(q, "date(ts, 'unixepoch')", week, agent),
    }
