"""Log an agent in again: run the claude CLI's login in that agent's environment, on this
terminal, then tell the daemon to reset the agent so that it resumes.

    hivectl [--socket PATH] login alice        (asks the running daemon where its state is)
    python -m hive.cli.login alice --config hive.toml --state-dir /var/lib/hive   (offline)

An agent whose turn failed with 401/403/"Not logged in" is parked in ``needs_login`` with its
messages kept. This command:

1. finds the agent (its stored config, else hive.toml) and runs, in the agent's own
   environment (its ``CLAUDE_CONFIG_DIR``, its sandbox), either ``claude setup-token``
   (default: prints a long-lived token; paste it when asked and hive keeps it as this
   agent's credential, mode 0600) or ``claude auth login`` (``--method auth-login``: the CLI
   keeps the credentials in the agent's config dir itself);
2. sends the admin verb ``reset``, which clears needs_login: the agent's next turn starts
   with the messages it kept.

``--token-file PATH`` (``-`` for stdin) stores a token you already have instead of running
the CLI, so the flow also works from scripts.
"""

from __future__ import annotations

import argparse
import getpass
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hive.process import AgentPaths, ProcessSpec
from hive.runtimes.base import Login

if TYPE_CHECKING:  # imported where used: hivectl's start-up does not pay for the schema
    from hive.config import AgentConfig, HiveConfig

METHODS = ("setup-token", "auth-login")


class LoginError(RuntimeError):
    """The login cannot go on; the message says what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hive-login", description="Log a needs_login agent in again, then resume it."
    )
    add_arguments(p)
    return p.parse_args(argv)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the agent")
    p.add_argument("--config", type=Path, help="hive.toml (default: ask the running daemon)")
    p.add_argument("--state-dir", type=Path, help="the hive's state dir (overrides [hive])")
    p.add_argument("--run-dir", type=Path, help="sockets (default: <state-dir>/run)")
    p.add_argument("--method", choices=METHODS, default="setup-token")
    p.add_argument("--token-file", help="store this token (- for stdin); do not run the CLI")
    p.add_argument("--no-reset", action="store_true", help="do not tell the daemon")


def from_daemon(socket: str) -> HiveConfig:
    """The running daemon's own settings, for a login that names only the agent."""
    from hive.client import ConnectionLost, HiveError, SyncClient
    from hive.config import HiveConfig

    try:
        with SyncClient(socket, timeout=30) as client:
            info = client.call("login_info")
    except (ConnectionLost, HiveError, OSError) as exc:
        why = getattr(exc, "message", None) or str(exc)
        raise LoginError(
            f"cannot ask the daemon at {socket} where the hive's state is ({why}); pass "
            "--socket (before `login`), or --config and --state-dir to log in offline"
        ) from None
    return HiveConfig(
        state_dir=Path(info["state_dir"]),
        run_dir=Path(info["run_dir"]),
        claude_bin=str(info["claude_bin"]),
        agent_python=str(info["agent_python"]),
    )


def load_hive(args: argparse.Namespace, socket: str | None = None) -> HiveConfig:
    if socket is not None and not (args.config or args.state_dir):
        return from_daemon(socket)
    from hive.config import HiveConfig

    cfg = HiveConfig.load(args.config) if args.config else HiveConfig()
    if args.state_dir:
        cfg = cfg.with_overrides(state_dir=args.state_dir)
    if args.run_dir:
        cfg = cfg.with_overrides(run_dir=args.run_dir.resolve())
    return cfg.with_overrides(state_dir=cfg.state_dir.resolve())


def find_agent(cfg: HiveConfig, name: str) -> AgentConfig:
    """The agent's config as the daemon knows it (the store), else as hive.toml declares it."""
    from hive.config import AgentConfig

    if cfg.db_path.exists():
        from hive.store import Queries, connect

        conn = connect(cfg.db_path, readonly=True)
        try:
            for stored, config in Queries(conn).agent_configs():
                if stored == name:
                    return AgentConfig.from_dict(config, where=f"stored agent '{name}'")
        finally:
            conn.close()
    declared = cfg.agent(name)
    if declared is None:
        raise LoginError(f"no agent named '{name}' in {cfg.db_path} or the config")
    return declared


def agent_paths(cfg: HiveConfig, name: str) -> AgentPaths:
    return AgentPaths.for_agent(name, cfg.state_dir, cfg.sockets_dir)


def runtime_login(agent: AgentConfig) -> Login:
    """How the agent's runtime logs in; LoginError for a runtime that has no login."""
    from hive.runtimes import get_runtime

    login = get_runtime(agent.runtime).login()
    if login is None:
        raise LoginError(f"agent '{agent.name}' runs the {agent.runtime} runtime: no login")
    return login


def login_command(cfg: HiveConfig, agent: AgentConfig, method: str) -> ProcessSpec:
    """What runs on the terminal: the runtime's login, wrapped in the agent's sandbox."""
    from hive.sandboxes import get_sandbox

    login = runtime_login(agent)
    paths = agent_paths(cfg, agent.name)
    spec = login.login_spec(cfg, agent, paths, method)
    sandbox = get_sandbox(agent.sandbox)
    sandbox.prepare(agent, paths)
    return sandbox.wrap(spec, agent, paths)


def store_token(cfg: HiveConfig, agent: AgentConfig, token: str) -> Path:
    login = runtime_login(agent)
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise LoginError("that is not a token: expected one word like sk-ant-oat01-...")
    paths = agent_paths(cfg, agent.name)
    paths.ensure()  # a token stored before the first start: the daemon's own layout
    return login.store_login_token(paths, token)


def run_login(cfg: HiveConfig, agent: AgentConfig, method: str) -> Path | None:
    """Run the CLI's login on this terminal; return where a pasted token was stored."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LoginError(
            "the claude login is interactive and needs a terminal; run this in one, or pass "
            "--token-file with a token from `claude setup-token` run elsewhere"
        )
    spec = login_command(cfg, agent, method)
    print(f"hive: running `{' '.join(spec.argv)}` as agent '{agent.name}'", file=sys.stderr)
    # A session of its own: the operator's terminal stays its stdin and stdout, but is not
    # its controlling terminal, so nothing in the agent's sandbox can push keystrokes into
    # the operator's shell (TIOCSTI is refused to a process without that terminal as its
    # own) or take the terminal over (TIOCSCTTY: it is this session's already).
    done = subprocess.run(
        spec.argv, env=spec.env, cwd=spec.cwd, check=False, start_new_session=True
    )
    if done.returncode != 0:
        raise LoginError(f"the claude login exited with {done.returncode}; nothing changed")
    if method != "setup-token":
        return None
    token = getpass.getpass("Paste the token printed above (sk-ant-oat01-...): ")
    return store_token(cfg, agent, token)


def reset_agent(cfg: HiveConfig, name: str, socket: str | None = None) -> dict[str, object]:
    """The admin verb ``reset``: clears needs_login (and failed); the agent resumes."""
    from hive.client import HiveError, SyncClient

    try:
        with SyncClient(socket or cfg.sockets_dir / "admin.sock", timeout=30) as client:
            result = client.call("reset", names=[name])
    except HiveError as exc:
        raise LoginError(
            f"logged in, but the daemon was not told ({exc.message}); once it runs: "
            f"hivectl reset {name}"
        ) from exc
    answer = result["agents"][name]
    if "error" in answer:
        raise LoginError(f"logged in, but the reset failed: {answer['error']}")
    return dict(answer)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


def run(args: argparse.Namespace, socket: str | None = None) -> None:
    """Log in; ``socket``: the daemon's admin socket (hivectl's), asked for the hive's
    settings unless --config / --state-dir name them."""
    from hive.config import ConfigError

    try:
        cfg = load_hive(args, socket)
        agent = find_agent(cfg, args.name)
        if args.token_file:
            text = sys.stdin.read() if args.token_file == "-" else Path(args.token_file).read_text()
            where: Path | None = store_token(cfg, agent, text)
        else:
            where = run_login(cfg, agent, args.method)
        if where is not None:
            print(f"hive: token stored for '{agent.name}' in {where}", file=sys.stderr)
        if not args.no_reset:
            reset_agent(cfg, agent.name, socket)
            print(f"hive: '{agent.name}' reset; it resumes with its kept messages", file=sys.stderr)
    except (LoginError, ConfigError, OSError) as exc:
        print(f"hive login: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
