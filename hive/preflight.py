"""What must hold before a hive starts, checked before any socket opens.

An agent whose runtime binary is missing, or who has no credential at all, would only
crash-loop to ``failed`` with a traceback per attempt; the dashboard port held by another
program would stop the daemon after it had already answered hivectl. Each is a
configuration problem: the start stops with one line per problem that names the agents,
what is missing and how to fix it, and nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from hive.config import AgentConfig, HiveConfig, stored_agent_config

# Where the claude CLI finds a credential (besides a token stored by `hivectl login`).
CREDENTIAL_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# Cloud providers bring their own credentials (AWS, Google): the CLI checks those.
PROVIDER_VARIABLES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
CLI_CREDENTIALS_FILE = ".credentials.json"  # written by `claude auth login`


def all_agents(cfg: HiveConfig) -> list[AgentConfig]:
    """hive.toml's agents, and those the store holds (spawned by the manager)."""
    agents = {a.name: a for a in cfg.agents}
    if cfg.db_path.exists():
        from hive.store import Queries, connect

        conn = connect(cfg.db_path, readonly=True)
        try:
            for row in Queries(conn).agents():
                if row.name not in agents:
                    agents[row.name] = stored_agent_config(row.name, row.config)[0]
        finally:
            conn.close()
    return list(agents.values())


def problems(cfg: HiveConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem that would stop agents from running; empty: good to go."""
    env = os.environ if environ is None else environ
    claude = [a for a in all_agents(cfg) if a.runtime == "claude"]
    if not claude:
        return []
    out: list[str] = []
    binary = cfg.claude_bin
    if not _runnable(binary, env):
        out.append(
            f"{_who(claude)} (runtime claude): the claude CLI '{binary}' is not "
            + ("an executable file" if os.sep in binary else "on PATH")
            + "; install Claude Code (npm install -g @anthropic-ai/claude-code) or set "
            "[hive] claude_bin to its full path"
        )
    lacking = [a for a in claude if not _has_credential(cfg, a, env)]
    if lacking:
        first = lacking[0].name
        out.append(
            f"{_who(lacking)} (runtime claude): no credential: set ANTHROPIC_API_KEY (or "
            "CLAUDE_CODE_OAUTH_TOKEN) in the supervisor's environment, or store a token "
            f"for each first: hivectl login {first} --config HIVE.TOML --state-dir DIR "
            "--token-file FILE --no-reset"
        )
    return out


def _who(agents: list[AgentConfig]) -> str:
    names = ", ".join(f"'{a.name}'" for a in agents)
    return f"agent {names}" if len(agents) == 1 else f"agents {names}"


def _runnable(binary: str, env: Mapping[str, str]) -> bool:
    if os.sep in binary:
        return os.path.isfile(binary) and os.access(binary, os.X_OK)
    return shutil.which(binary, path=env.get("PATH", os.defpath)) is not None


def _has_credential(cfg: HiveConfig, agent: AgentConfig, env: Mapping[str, str]) -> bool:
    from hive.process import AgentPaths
    from hive.runtimes.claude import CONFIG_SUBDIR, read_login_token

    names = (*CREDENTIAL_VARIABLES, *PROVIDER_VARIABLES)
    if any(env.get(k) or agent.env.get(k) for k in names):
        return True
    paths = AgentPaths.for_agent(agent.name, cfg.state_dir, cfg.sockets_dir)
    if not paths.root.is_dir():
        return False  # a first start: nothing stored yet
    try:
        if read_login_token(paths):
            return True
    except OSError:
        pass  # unreadable or planted: not a credential
    # lstat only: a link planted by the agent is not followed by root.
    return _is_regular_file(paths.state / CONFIG_SUBDIR / CLI_CREDENTIALS_FILE)


def _is_regular_file(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
