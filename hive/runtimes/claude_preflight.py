"""What the claude runtime needs before a hive starts (``ClaudeRuntime.preflight``): the
claude CLI, and a credential for each of its agents. Each problem is one line that names
the agents, what is missing and how to fix it (hive.preflight gathers them)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from hive.config import AgentConfig, HiveConfig
from hive.process import AgentPaths
from hive.runtimes.claude_version import CLAUDE_CLI_PACKAGE, CLAUDE_CLI_VERSION

# Where the claude CLI finds a credential (besides a token stored by `hivectl login`).
CREDENTIAL_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# Cloud providers bring their own credentials (AWS, Google): the CLI checks those.
PROVIDER_VARIABLES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
CLI_CREDENTIALS_FILE = ".credentials.json"  # written by `claude auth login`


def problems(
    cfg: HiveConfig, agents: Sequence[AgentConfig], env: Mapping[str, str], claude_bin: str
) -> list[str]:
    """One line per problem of these claude agents; empty: good to go."""
    if not agents:
        return []
    out: list[str] = []
    if not _runnable(claude_bin, env):
        out.append(
            f"{_who(agents)} (runtime claude): the claude CLI '{claude_bin}' is not "
            + ("an executable file" if os.sep in claude_bin else "on PATH")
            + "; install Claude Code (npm install -g "
            f"{CLAUDE_CLI_PACKAGE}@{CLAUDE_CLI_VERSION}) or set [hive] claude_bin to its full "
            "path"
        )
    lacking = [a for a in agents if not _has_credential(cfg, a, env)]
    if lacking:
        first = lacking[0].name
        out.append(
            f"{_who(lacking)} (runtime claude): no credential: set ANTHROPIC_API_KEY (or "
            "CLAUDE_CODE_OAUTH_TOKEN) in the supervisor's environment, or store a token "
            f"for each first: hivectl login {first} --config HIVE.TOML --state-dir DIR "
            "--token-file FILE --no-reset"
        )
    return out


def _who(agents: Sequence[AgentConfig]) -> str:
    names = ", ".join(f"'{a.name}'" for a in agents)
    return f"agent {names}" if len(agents) == 1 else f"agents {names}"


def _runnable(binary: str, env: Mapping[str, str]) -> bool:
    if os.sep in binary:
        return os.path.isfile(binary) and os.access(binary, os.X_OK)
    return shutil.which(binary, path=env.get("PATH", os.defpath)) is not None


def _has_credential(cfg: HiveConfig, agent: AgentConfig, env: Mapping[str, str]) -> bool:
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
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
