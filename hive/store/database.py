"""The SQLite database: opening, migrating, and the statements hive runs.

One connection writes (owned by the Store actor's thread); readers open their own
read-only connections. WAL mode lets them read while the writer commits.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from hive.store.migrations import MIGRATIONS
from hive.wire import Envelope, packb, unpackb


class StoreError(RuntimeError):
    """The store refused a request: a schema newer than this hive, an unknown field or table."""


def connect(path: Path, *, readonly: bool = False, synchronous: str = "FULL") -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE
    if not readonly:
        flags |= apsw.SQLITE_OPEN_CREATE
    conn = apsw.Connection(str(path), flags=flags)
    conn.setbusytimeout(5000)
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
    return conn


def schema_version(conn: apsw.Connection) -> int:
    """The schema version a database file holds (0: a new, empty one)."""
    return int(str(conn.execute("PRAGMA user_version").fetchall()[0][0]))


def newer_schema_problem(path: Path, version: int) -> str | None:
    """The one line that refuses a database written by a newer hive (None: not newer)."""
    if version <= len(MIGRATIONS):
        return None
    return (
        f"{path} has schema v{version}, written by a newer hive; this hive knows schemas up to "
        f"v{len(MIGRATIONS)} and will not touch it: run the newer hive, or restore the backup "
        "an upgrade left next to it (hive.db.v*.bak)"
    )


def backup_before_migrating(conn: apsw.Connection, path: Path) -> Path | None:
    """A copy of the database next to it, before a migration changes it: ``hive.db.vN-
    <time>.bak`` (mode 0600), made with SQLite's backup API (a consistent copy, WAL
    included) and fsynced. None when there is nothing to migrate (new or current)."""
    version = schema_version(conn)
    if version == 0 or version >= len(MIGRATIONS):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.v{version}-{stamp}.bak")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        _copy_to(conn, target)
    except BaseException as exc:
        # A copy cut short (a full disk) must never pass for a backup someone restores.
        target.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        raise StoreError(
            f"could not back up {path} before upgrading it from schema v{version} ({exc}); "
            f"nothing was changed: make room for a copy of {path.name} next to it, then start "
            "again"
        ) from exc
    return target


def _copy_to(conn: apsw.Connection, target: Path) -> None:
    """SQLite's backup of ``conn`` into the empty file ``target``, fsynced."""
    dest = apsw.Connection(str(target))
    try:
        with dest.backup("main", conn, "main") as copy:
            copy.step()
    finally:
        dest.close()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema to the newest version; return that version."""
    version = schema_version(conn)
    if version > len(MIGRATIONS):
        raise StoreError(
            f"database schema v{version} is newer than this hive (v{len(MIGRATIONS)}); "
            "upgrade hive or restore a backup"
        )
    for target in range(version + 1, len(MIGRATIONS) + 1):
        with conn:
            conn.execute(MIGRATIONS[target - 1])
            conn.execute(f"PRAGMA user_version={target}")
    return len(MIGRATIONS)


class IdAllocator:
    """Hands out increasing ids for one table without a round trip to the writer.

    Ids are taken before the row is committed, so the Bus can tell a sender its message id
    in the same step that commits it. ``next()`` on itertools.count is atomic under the GIL.
    """

    def __init__(self, start: int) -> None:
        self._counter = itertools.count(start)

    def next(self) -> int:
        return next(self._counter)


@dataclass
class AgentRow:
    """One row of the ``agents`` table: an agent's config and its lifecycle flags."""

    name: str
    parent: str
    config: dict[str, Any]
    paused: bool
    failed: bool
    failed_reason: str
    needs_login: bool
    needs_update: bool
    model: str
    status_text: str
    status_set_at: float | None
    destroyed: bool
    stopped: bool = False  # the operator stopped it: no turns until started
    deployed_sha: str = ""  # the config commit it runs (spawned from a repo)
    kick_note: str | None = None  # a kick not yet served by a clean turn ("": no note)
    budget_waived_day: str = ""  # the UTC day the operator let it run over its budget


def _envelope(row: Sequence[Any]) -> Envelope:
    id_, sender, recipient, kind, body, ts, meta = row[:7]
    return Envelope(
        id=id_,
        sender=sender,
        to=recipient,
        body=body,
        kind=kind,
        ts=ts,
        meta=unpackb(meta) if meta else {},
    )


_MSG_COLS = "id, sender, recipient, kind, body, ts, meta"


class Queries:
    """Statements over one connection. The Store actor uses the writing ones; anyone with a
    read-only connection uses the reading ones."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    # --- writes (Store actor only) ---------------------------------------------------

    def insert_messages(self, envs: Iterable[Envelope]) -> None:
        self.conn.executemany(
            "INSERT INTO messages (id, sender, recipient, kind, body, ts, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e.id, e.sender, e.to, e.kind, e.body, e.ts, packb(e.meta) if e.meta else None)
                for e in envs
            ],
        )

    def mark_delivered(self, ids: Sequence[int], by: str, turn_id: int | None) -> None:
        now = time.time()
        self.conn.executemany(
            "UPDATE messages SET state = 'delivered', delivered_at = ?, delivered_by = ?, "
            "turn_id = ? WHERE id = ? AND state = 'pending'",
            [(now, by, turn_id, i) for i in ids],
        )

    def upsert_agent(self, name: str, parent: str, config: dict[str, Any], model: str) -> None:
        self.conn.execute(
            "INSERT INTO agents (name, parent, config, created_at, model) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET parent = excluded.parent, "
            "config = excluded.config, destroyed = 0",
            (name, parent, json.dumps(config), time.time(), model),
        )

    def set_agent_fields(self, name: str, **values: Any) -> None:
        allowed = {
            "paused", "failed", "failed_reason", "needs_login", "needs_update", "model",
            "status_text", "status_set_at", "destroyed", "parent", "config", "stopped",
            "deployed_sha", "kick_note", "budget_waived_day",
        }  # fmt: skip
        bad = set(values) - allowed
        if bad:
            raise StoreError(f"not agent fields: {', '.join(sorted(bad))}")
        cols = ", ".join(f"{k} = ?" for k in values)
        params = [json.dumps(v) if k == "config" else v for k, v in values.items()]
        self.conn.execute(f"UPDATE agents SET {cols} WHERE name = ?", (*params, name))

    def start_turn(
        self,
        turn_id: int,
        agent: str,
        model: str,
        message_ids: Sequence[int],
        kick_note: str | None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO turns (id, agent, started_at, model, message_ids, kick_note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (turn_id, agent, time.time(), model, packb(list(message_ids)), kick_note),
        )

    def end_turn(self, turn_id: int, exit_class: str, exit_code: int | None, detail: str) -> None:
        self.conn.execute(
            "UPDATE turns SET ended_at = ?, exit_class = ?, exit_code = ?, detail = ? WHERE id = ?",
            (time.time(), exit_class, exit_code, detail, turn_id),
        )

    def end_interrupted_turns(self, detail: str) -> int:
        """End every turn a stopped daemon left open (a kill -9, a power loss) as cancelled:
        nothing runs it any more, and its messages, never delivered, come again. It ended
        at its last recorded event (else its start), not at this boot, which may be hours
        later. Run at boot, before the actors start; returns how many."""
        self.conn.execute(
            "UPDATE turns SET exit_class = 'cancelled', detail = ?, ended_at = COALESCE("
            "(SELECT MAX(ts) FROM turn_events WHERE turn_id = turns.id), started_at) "
            "WHERE ended_at IS NULL",
            (detail,),
        )
        return int(self.conn.changes())

    def add_turn_events(
        self, turn_id: int, first_seq: int, events: Sequence[tuple[str, Any]]
    ) -> None:
        now = time.time()
        self.conn.executemany(
            "INSERT OR REPLACE INTO turn_events (turn_id, seq, ts, kind, data) "
            "VALUES (?, ?, ?, ?, ?)",
            [(turn_id, first_seq + i, now, k, packb(d)) for i, (k, d) in enumerate(events)],
        )

    def insert_event(self, agent: str, kind: str, data: Any) -> None:
        self.conn.execute(
            "INSERT INTO events (ts, agent, kind, data) VALUES (?, ?, ?, ?)",
            (time.time(), agent, kind, packb(data)),
        )

    def insert_stats(self, rows: Iterable[tuple[str, float, str, float]]) -> None:
        self.conn.executemany(
            "INSERT INTO stats (agent, ts, key, value) VALUES (?, ?, ?, ?)", list(rows)
        )

    # --- reads ------------------------------------------------------------------------

    def max_id(self, table: str) -> int:
        if table not in ("messages", "turns", "approvals", "events"):
            raise StoreError(f"no id allocator for table {table}")
        row = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchall()
        return int(str(row[0][0]))

    def agent_configs(self) -> list[tuple[str, dict[str, Any]]]:
        """Each agent's name and stored config (not destroyed). Only columns every schema
        version has: the pre-start checks and ``hivectl login`` read a database that the
        start has not migrated yet, which may be an earlier hive's."""
        rows = self.conn.execute(
            "SELECT name, config FROM agents WHERE destroyed = 0 ORDER BY name"
        )
        return [(str(name), json.loads(config)) for name, config in rows]

    def agents(self, include_destroyed: bool = False) -> list[AgentRow]:
        sql = (
            "SELECT name, parent, config, paused, failed, failed_reason, needs_login, "
            "needs_update, model, status_text, status_set_at, destroyed, stopped, deployed_sha, "
            "kick_note, budget_waived_day FROM agents"
        )
        if not include_destroyed:
            sql += " WHERE destroyed = 0"
        out = []
        for r in self.conn.execute(sql + " ORDER BY name"):
            out.append(
                AgentRow(
                    name=r[0],
                    parent=r[1],
                    config=json.loads(r[2]),
                    paused=bool(r[3]),
                    failed=bool(r[4]),
                    failed_reason=r[5],
                    needs_login=bool(r[6]),
                    needs_update=bool(r[7]),
                    model=r[8],
                    status_text=r[9],
                    status_set_at=r[10],
                    destroyed=bool(r[11]),
                    stopped=bool(r[12]),
                    deployed_sha=r[13],
                    kick_note=r[14],
                    budget_waived_day=r[15],
                )
            )
        return out

    def pending_messages(self, recipient: str) -> list[Envelope]:
        rows = self.conn.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE recipient = ? AND state = 'pending' "
            "ORDER BY id",
            (recipient,),
        )
        return [_envelope(r) for r in rows]

    def all_pending(self) -> Iterator[Envelope]:
        for r in self.conn.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE state = 'pending' ORDER BY id"
        ):
            yield _envelope(r)

    def messages(
        self, agent: str, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """An agent's mail, both directions, newest first, with delivery state."""
        sql = (
            f"SELECT {_MSG_COLS}, state, delivered_at, delivered_by, turn_id FROM messages "
            "WHERE (recipient = ? OR sender = ?)"
        )
        params: list[Any] = [agent, agent]
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        out = []
        for r in self.conn.execute(sql, params):
            d = _envelope(r).to_wire()
            d.update(state=r[7], delivered_at=r[8], delivered_by=r[9], turn_id=r[10])
            out.append(d)
        return out

    def turns(
        self, agent: str, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The agent's turns, newest first; ``before_id``: only older than that turn."""
        rows = self.conn.execute(
            "SELECT id, started_at, ended_at, exit_class, exit_code, detail, model, "
            "message_ids, kick_note FROM turns WHERE agent = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?",
            (agent, before_id if before_id is not None else 2**63 - 1, limit),
        )
        return [
            {
                "id": r[0],
                "agent": agent,
                "started_at": r[1],
                "ended_at": r[2],
                "exit_class": r[3],
                "exit_code": r[4],
                "detail": r[5],
                "model": r[6],
                "message_ids": unpackb(r[7]) if r[7] else [],
                "kick_note": r[8],
            }
            for r in rows
        ]

    def last_turns(self) -> dict[str, dict[str, Any]]:
        """Each agent's newest ended turn, to rebuild last-turn chips after a restart."""
        rows = self.conn.execute(
            "SELECT agent, id, started_at, ended_at, exit_class, detail FROM turns "
            "WHERE id IN (SELECT MAX(id) FROM turns WHERE ended_at IS NOT NULL GROUP BY agent)"
        )
        return {
            r[0]: {
                "id": r[1],
                "started_at": r[2],
                "ended_at": r[3],
                "duration": (r[3] - r[2]) if r[3] else None,
                "exit_class": r[4],
                "detail": r[5],
            }
            for r in rows
        }

    def turn_events(self, turn_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT seq, ts, kind, data FROM turn_events WHERE turn_id = ? ORDER BY seq",
            (turn_id,),
        )
        return [{"seq": r[0], "ts": r[1], "kind": r[2], "data": unpackb(r[3])} for r in rows]

    def events(self, agent: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if agent is None:
            rows = self.conn.execute(
                "SELECT id, ts, agent, kind, data FROM events ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self.conn.execute(
                "SELECT id, ts, agent, kind, data FROM events WHERE agent = ? "
                "ORDER BY id DESC LIMIT ?",
                (agent, limit),
            )
        return [
            {"id": r[0], "ts": r[1], "agent": r[2], "kind": r[3], "data": unpackb(r[4])}
            for r in rows
        ]
