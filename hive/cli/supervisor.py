"""hive-supervisor: run a hive.

hive-supervisor --config hive.toml --state-dir /var/lib/hive
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from pathlib import Path

import apsw
import trio

from hive.config import ConfigError, HiveConfig
from hive.systemd import EXIT_CONFIG


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hive-supervisor", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="hive.toml (default: no agents)")
    p.add_argument("--state-dir", type=Path, help="database and agent dirs (overrides [hive])")
    p.add_argument("--run-dir", type=Path, help="sockets (default: <state-dir>/run)")
    p.add_argument("--no-dashboard", action="store_true", help="do not serve the web dashboard")
    p.add_argument("--dashboard-port", type=int, help="dashboard port (default 8417)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace) -> HiveConfig:
    cfg = HiveConfig.load(args.config) if args.config else HiveConfig()
    overrides: dict[str, object] = {}
    if args.state_dir:
        overrides["state_dir"] = args.state_dir.resolve()
    if args.run_dir:
        overrides["run_dir"] = args.run_dir.resolve()
    if args.no_dashboard:
        overrides["dashboard"] = False
    if args.dashboard_port is not None:
        overrides["dashboard_port"] = args.dashboard_port
    cfg = cfg.with_overrides(**overrides)
    return cfg.with_overrides(state_dir=cfg.state_dir.resolve())


def setup_logging(level: str) -> None:
    """stderr, or journald when systemd started us with a journald to take it (the rule of
    hive.journal.journald_wanted): then records that name an agent carry it as the AGENT
    field, and agents' own logs go there too (hive.agentlog), for `journalctl AGENT=bob`
    and the log viewers alike."""
    from hive import agentlog
    from hive.journal import JournalHandler, journald_wanted

    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if agentlog.choose(journald_wanted()) == "journald":
        root = logging.getLogger()
        # systemd already captures stderr into the journal: replace, don't duplicate.
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(JournalHandler())


# Open files the daemon wants (the systemd unit's LimitNOFILE): every agent socket,
# connection, session and turn pipe holds some. Started from a shell, the soft limit is often
# 1024 while the hard one is far higher; without raising it, a few hundred agents ran the
# daemon out of fds.
FD_LIMIT_WANTED = 65536


def raise_fd_limit() -> None:
    """Raise the soft RLIMIT_NOFILE towards ``FD_LIMIT_WANTED``, as far as the hard allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_LIMIT_WANTED if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_WANTED)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        logging.getLogger(__name__).warning("open files stay at %d: %s", soft, exc)
        return
    logging.getLogger(__name__).info("open files: raised the soft limit from %d to %d", soft, want)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level.upper())
    raise_fd_limit()
    try:
        cfg = load_config(args)
    except ConfigError as exc:
        print(f"hive-supervisor: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)  # not restarted by systemd: a config does not fix itself
    try:
        preflight(cfg)
    except StartRefused as exc:
        for line in exc.lines:
            print(f"hive-supervisor: {line}", file=sys.stderr)
        sys.exit(2)
    from hive.daemon import run_hive
    from hive.store.database import StoreError

    try:
        code = trio.run(run_hive, cfg)
    except StoreError as exc:  # the database could not be made ready: one line, not a trace
        print(f"hive-supervisor: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


class StartRefused(Exception):
    """The pre-flight checks refused to start the daemon; ``lines`` says why, one problem each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def preflight(cfg: HiveConfig) -> None:
    """Refuse to start, before any socket exists, what could only fail later: another
    supervisor on this state dir, agents without their runtime or a credential, a
    dashboard port someone else holds (bound here and handed to the dashboard, so nothing
    can take it in between)."""
    from hive import preflight as checks
    from hive.statelock import StateDirBusy, lock_state_dir

    try:
        lock_state_dir(cfg.state_dir)
    except StateDirBusy as exc:
        raise StartRefused([str(exc)]) from None
    except OSError as exc:
        raise StartRefused([f"cannot lock {cfg.state_dir}: {exc}"]) from None
    try:
        lines = checks.problems(cfg)
    except (ConfigError, OSError) as exc:
        lines = [str(exc)]
    except apsw.Error as exc:  # one line, not a traceback: a database it cannot read
        lines = [f"cannot read {cfg.db_path}: {exc}"]
    if lines:
        raise StartRefused(lines)
    if cfg.dashboard:
        from hive.ui.server import DashboardBindError, prebind

        try:
            prebind(cfg.dashboard_host, cfg.dashboard_port)
        except DashboardBindError as exc:
            raise StartRefused([str(exc)]) from None


if __name__ == "__main__":
    main()
