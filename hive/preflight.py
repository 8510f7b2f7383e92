"""What must hold before a hive starts, checked before any socket opens.

An agent whose runtime binary is missing, or who has no credential at all, would only
crash-loop to ``failed`` with a traceback per attempt; the dashboard port held by another
program would stop the daemon after it had already answered hivectl. Each is a
configuration problem: the start stops with one line per problem that names the agents,
what is missing and how to fix it, and nothing is left behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hive import reachable
from hive.config import AgentConfig, HiveConfig, stored_agent_config


def all_agents(cfg: HiveConfig) -> list[AgentConfig]:
    """hive.toml's agents, and those the store holds (spawned by the manager)."""
    agents = {a.name: a for a in cfg.agents}
    if cfg.db_path.exists():
        from hive.store import Queries, connect

        conn = connect(cfg.db_path, readonly=True)
        try:
            rows = Queries(conn).agent_configs()  # the start migrates the db after this check
        finally:
            conn.close()
        for name, config in rows:
            if name not in agents:
                agents[name] = stored_agent_config(name, config)[0]
    return list(agents.values())


def newer_schema(cfg: HiveConfig) -> list[str]:
    """One line if the database was written by a newer hive (it is left untouched)."""
    if not cfg.db_path.exists():
        return []
    from hive.store import connect
    from hive.store.database import newer_schema_problem, schema_version

    conn = connect(cfg.db_path, readonly=True)
    try:
        version = schema_version(conn)
    finally:
        conn.close()
    line = newer_schema_problem(cfg.db_path, version)
    return [line] if line else []


# Less room than this on the state dir's file system and the start is refused: the
# database, its WAL and shared-memory index could not even be opened (SQLite said only
# "disk I/O error", in a traceback, and systemd restarted the daemon into it again).
MIN_FREE_BYTES = 1 << 20


def disk_space(cfg: HiveConfig) -> list[str]:
    """One line if the state dir's file system has (almost) no room left. On a first
    start the state dir does not exist yet: its nearest existing parent's file system is
    where it will be made."""
    where = cfg.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free >= MIN_FREE_BYTES:
        return []
    return [
        f"{cfg.state_dir}: only {free // 1024} KiB free on its file system; hive needs at "
        f"least {MIN_FREE_BYTES // 1024} KiB to open and write its database (free some space "
        "there, then start again; nothing was changed)"
    ]


def problems(cfg: HiveConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem that would stop agents from running; empty: good to go.

    Each runtime checks its own agents (``Runtime.preflight``)."""
    from hive.plugins import UnknownPlugin
    from hive.runtimes import get_runtime

    full = disk_space(cfg)
    if full:  # nothing else can be read (SQLite cannot even open the database)
        return full
    newer = newer_schema(cfg)
    if newer:  # nothing else is read from a schema this hive does not know
        return newer
    env = os.environ if environ is None else environ
    by_runtime: dict[str, list[AgentConfig]] = {}
    everyone = all_agents(cfg)
    for agent in everyone:
        by_runtime.setdefault(agent.runtime, []).append(agent)
    out: list[str] = []
    for name, agents in by_runtime.items():
        try:
            runtime = get_runtime(name)
        except UnknownPlugin as exc:
            names = ", ".join(f"'{a.name}'" for a in agents)
            out.append(f"agents {names}: {exc} (is the package that provides it installed?)")
            continue
        out.extend(runtime.preflight(cfg, agents, env))
    out.extend(reachable.problems(cfg, everyone))  # sandboxed uids reach their tools
    return out
