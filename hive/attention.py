"""The attention inbox: what needs the operator, as items kept in the store.

An item has a severity (critical: an agent failed or needs a login; high: crashes,
approvals, questions, budget stops; info: mail), a time, the agent it is about, and a
state the operator moves it through: ``new`` -> ``seen`` -> ``done``. One open item per
``key``: a repeat of the same trouble (the next crash of a crash loop) bumps its count and
makes it ``new`` again instead of adding a row, so a flood of one kind never buries
another. Lists are ordered by severity first, so mail never pushes a failure out of sight.

Pure functions here: ``derive`` turns a StateHub update into the items it raises or
settles; the rest are queries run by the Store actor (writes) or the Reader (lists).

>>> [type(x).__name__ for x in derive({"kind": "event", "data": {"agent": "bob",
...     "kind": "failed", "reason": "too many crashes"}})]
['Raise']
>>> derive({"kind": "question", "key": "7", "data": None})
[Settle(key='question:7')]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hive.store import Queries
from hive.wire import OPERATOR, WireError

CRITICAL, HIGH, INFO = 3, 2, 1
SEVERITIES = {"critical": CRITICAL, "high": HIGH, "info": INFO}
SEVERITY_NAMES = {v: k for k, v in SEVERITIES.items()}
STATES = ("new", "seen", "done")
# What a list may ask for: one state, or every state but done.
LIST_STATES = (*STATES, "open", "all")
KINDS = ("failed", "needs_login", "crash", "over_budget", "approval", "question", "mail")
BODY_MAX = 2000
RETENTION_SECONDS = 14 * 86400.0  # done items older than this are deleted
MAX_ITEMS = 50_000

_COLS = (
    "id, key, kind, severity, agent, title, body, link, created_at, updated_at, count, "
    "state, expires_at, done_at"
)


@dataclass(frozen=True)
class Raise:
    """Open (or refresh) the item ``key``. ``repeat``: a new occurrence of the trouble,
    which counts and makes the item new again; otherwise only its text is refreshed."""

    key: str
    kind: str
    severity: int
    agent: str
    title: str
    body: str = ""
    link: str = ""
    expires_at: float | None = None
    repeat: bool = True


@dataclass(frozen=True)
class Settle:
    """The trouble ``key`` is over (an approval decided, a question answered): done."""

    key: str


Change = Raise | Settle


def _agent_event(data: dict[str, Any]) -> list[Change]:
    agent = str(data.get("agent") or "")
    link = f"/agents/{agent}"
    kind = data.get("kind")
    if kind == "failed":
        reason = str(data.get("reason") or "")
        return [
            Raise(f"failed:{agent}", "failed", CRITICAL, agent, f"{agent} failed", reason, link)
        ]
    if kind == "needs_login":
        detail = str(data.get("detail") or "the login has expired")
        body = f"{detail}; run `hivectl login {agent}` on the host, then it resumes"
        title = f"{agent} needs a login"
        return [Raise(f"needs_login:{agent}", "needs_login", CRITICAL, agent, title, body, link)]
    if kind == "crash":
        detail = str(data.get("detail") or "")
        retry = data.get("retry_in")
        if isinstance(retry, int | float):
            detail += f" (retry in {retry:.0f} s)"
        return [Raise(f"crash:{agent}", "crash", HIGH, agent, f"{agent} crashed", detail, link)]
    if kind == "over_budget":
        body = str(data.get("detail") or "its daily budget is spent")
        title = f"{agent} is over budget"
        return [Raise(f"budget:{agent}", "over_budget", HIGH, agent, title, body, link)]
    return []


def _pending_item(kind: str, key: str, data: dict[str, Any] | None) -> list[Change]:
    """An approval or question: open while pending, settled once decided or gone."""
    item_key = f"{kind}:{key}"
    if data is None or (data.get("status") or "pending") != "pending":
        return [Settle(item_key)]
    agent = str(data.get("agent") or "")
    if kind == "question":
        title = f"{agent or 'an agent'} asks"
        body = str(data.get("question") or data.get("description") or "")
    else:
        title = f"approval: {data.get('kind') or ''} for {agent}".strip()
        body = str(data.get("description") or "")
    expires = data.get("expires_at")
    expires_at = float(expires) if isinstance(expires, int | float) else None
    return [Raise(item_key, kind, HIGH, agent, title, body, "/", expires_at, repeat=False)]


def derive(update: dict[str, Any]) -> list[Change]:
    """The inbox changes a StateHub update makes (none for most)."""
    kind, data = update.get("kind"), update.get("data")
    if kind in ("approval", "question"):
        return _pending_item(str(kind), str(update.get("key")), data)
    if not isinstance(data, dict):
        return []
    if kind == "event":
        return _agent_event(data)
    if kind == "operator_message" and data.get("to") == OPERATOR:
        sender = str(data.get("from") or "")
        link = f"/agents/{sender}" if sender and sender != "system" else ""
        title, body = f"{sender} → operator", str(data.get("body") or "")
        return [Raise(f"mail:{data.get('id')}", "mail", INFO, sender, title, body, link)]
    return []


# --- the store side (run by the Store actor inside its transaction) ---------------------


def _row(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "key": r[1],
        "kind": r[2],
        "severity": SEVERITY_NAMES.get(int(r[3]), "info"),
        "agent": r[4],
        "title": r[5],
        "body": r[6],
        "link": r[7],
        "created_at": r[8],
        "updated_at": r[9],
        "count": r[10],
        "state": r[11],
        "expires_at": r[12],
        "done_at": r[13],
    }


def _by_id(q: Queries, item_id: int) -> dict[str, Any]:
    rows = list(q.conn.execute(f"SELECT {_COLS} FROM attention WHERE id = ?", (item_id,)))
    return _row(rows[0])


def apply(q: Queries, changes: Sequence[Change], now: float | None = None) -> list[dict[str, Any]]:
    """Write ``changes``; the rows they touched, as they are now."""
    now = time.time() if now is None else now
    touched: list[int] = []
    for change in changes:
        found = list(
            q.conn.execute(
                "SELECT id FROM attention WHERE key = ? AND state != 'done'", (change.key,)
            )
        )
        if isinstance(change, Settle):
            if found:
                q.conn.execute(
                    "UPDATE attention SET state = 'done', done_at = ? WHERE id = ?",
                    (now, found[0][0]),
                )
                touched.append(int(found[0][0]))
            continue
        body = change.body[:BODY_MAX]
        if found:
            item_id = int(found[0][0])
            again = ", count = count + 1, state = 'new'" if change.repeat else ""
            q.conn.execute(
                "UPDATE attention SET title = ?, body = ?, severity = ?, updated_at = ?, "
                f"expires_at = ?{again} WHERE id = ?",
                (change.title, body, change.severity, now, change.expires_at, item_id),
            )
        else:
            q.conn.execute(
                "INSERT INTO attention (key, kind, severity, agent, title, body, link, "
                "created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (change.key, change.kind, change.severity, change.agent, change.title, body,
                 change.link, now, now, change.expires_at),
            )  # fmt: skip
            item_id = int(q.conn.last_insert_rowid())
        touched.append(item_id)
    return [_by_id(q, i) for i in dict.fromkeys(touched)]


def counts(q: Queries) -> dict[str, Any]:
    """Open items: how many, how many new, and by severity (what the header shows)."""
    by_severity = {name: 0 for name in SEVERITIES}
    new = total = 0
    for state, severity, n in q.conn.execute(
        "SELECT state, severity, COUNT(*) FROM attention WHERE state != 'done' "
        "GROUP BY state, severity"
    ):
        total += int(n)
        if state == "new":
            new += int(n)
        by_severity[SEVERITY_NAMES.get(int(severity), "info")] += int(n)
    return {"open": total, "new": new, "by_severity": by_severity}


@dataclass(frozen=True)
class Filter:
    """Which items a list or a mark covers."""

    state: str = "open"  # new, seen, done, open (new + seen), all
    min_severity: int = INFO
    agent: str = ""
    kind: str = ""

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["severity >= ?"]
        args: list[Any] = [self.min_severity]
        if self.state == "open":
            clauses.append("state != 'done'")
        elif self.state != "all":
            clauses.append("state = ?")
            args.append(self.state)
        if self.agent:
            clauses.append("agent = ?")
            args.append(self.agent)
        if self.kind:
            clauses.append("kind = ?")
            args.append(self.kind)
        return " AND ".join(clauses), args


def check_filter(args: dict[str, Any]) -> Filter:
    """A Filter from a verb's arguments, each checked: a bad one is a ``bad_request``."""
    state = args.get("state") or "open"
    if state not in LIST_STATES:
        raise WireError("bad_request", f"state must be one of {', '.join(LIST_STATES)}")
    severity = args.get("severity") or "info"
    if severity not in SEVERITIES:
        raise WireError("bad_request", f"severity must be one of {', '.join(SEVERITIES)}")
    kind = args.get("kind") or ""
    if kind and kind not in KINDS:
        raise WireError("bad_request", f"kind must be one of {', '.join(KINDS)}")
    agent = args.get("agent") or ""
    if not isinstance(agent, str) or len(agent) > 64:
        raise WireError("bad_request", "agent must be an agent name")
    return Filter(str(state), SEVERITIES[severity], agent, str(kind))


def list_items(q: Queries, f: Filter, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """Items matching ``f``: open before done, then the most severe, then the newest."""
    where, args = f.where()
    rows = q.conn.execute(
        f"SELECT {_COLS} FROM attention WHERE {where} "
        "ORDER BY state = 'done', severity DESC, updated_at DESC, id DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    )
    return [_row(r) for r in rows]


def total(q: Queries, f: Filter) -> int:
    where, args = f.where()
    return int(next(iter(q.conn.execute(f"SELECT COUNT(*) FROM attention WHERE {where}", args)))[0])


def mark(
    q: Queries, state: str, ids: Sequence[int] | None, f: Filter, now: float | None = None
) -> list[int]:
    """Move items to ``state``: the ``ids`` given, or every item matching ``f``. The ids
    that changed."""
    now = time.time() if now is None else now
    done_at = now if state == "done" else None
    if ids is not None:
        marks = ", ".join("?" * len(ids))
        where, args = f"id IN ({marks})", list(ids)
    else:
        where, args = f.where()
    changed = [
        int(r[0])
        for r in q.conn.execute(
            f"SELECT id FROM attention WHERE ({where}) AND state != ?", (*args, state)
        )
    ]
    for start in range(0, len(changed), 500):
        chunk = changed[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        q.conn.execute(
            f"UPDATE attention SET state = ?, done_at = ? WHERE id IN ({marks})",
            (state, done_at, *chunk),
        )
    return changed


def prune(q: Queries, now: float, retention: float = RETENTION_SECONDS) -> int:
    """Delete done items older than ``retention``, and the oldest done beyond MAX_ITEMS."""
    q.conn.execute("DELETE FROM attention WHERE state = 'done' AND done_at < ?", (now - retention,))
    gone = q.conn.changes()
    extra = total(q, Filter(state="all")) - MAX_ITEMS
    if extra > 0:
        q.conn.execute(
            "DELETE FROM attention WHERE id IN (SELECT id FROM attention WHERE state = 'done' "
            "ORDER BY done_at LIMIT ?)",
            (extra,),
        )
        gone += q.conn.changes()
    return int(gone)
