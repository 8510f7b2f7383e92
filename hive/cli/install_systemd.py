"""Install hive-supervisor as a systemd service on a host without Nix.

    python -m hive.cli.install_systemd --config /etc/hive/hive.toml [--dry-run] [--prefix DIR]

Writes the unit to /etc/systemd/system, creates the hive-admin group (members may use
hivectl) and the state dir, and prints the command that starts the service. ``--prefix``
writes under another root instead (for tests and image builds) and leaves the host's groups
alone; ``--dry-run`` only says what it would do.
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hive.config import ConfigError, HiveConfig
from hive.systemd import ADMIN_GROUP, UNIT_NAME, UnitSettings, render_unit


@dataclass(frozen=True)
class Step:
    """One step of the install: what it says it does, and the action (None: advice only)."""

    says: str
    run: Callable[[], None] | None = None  # None: advice only


def supervisor_command(explicit: str | None) -> tuple[str, ...]:
    if explicit:
        return (explicit,)
    installed = shutil.which("hive-supervisor")
    if installed:
        return (str(Path(installed).resolve()),)
    return (sys.executable, "-m", "hive.cli.supervisor")


def rooted(prefix: Path | None, path: Path) -> Path:
    return prefix / path.relative_to("/") if prefix else path


def unit_settings(args: argparse.Namespace) -> UnitSettings:
    return UnitSettings(
        exec_start=supervisor_command(args.exec),
        config=args.config.resolve(),
        state_dir=args.state_dir,
        run_dir=args.run_dir,
        path=tuple(args.path),
    )


def plan(args: argparse.Namespace) -> list[Step]:
    settings = unit_settings(args)
    config_path = settings.config
    cfg = HiveConfig.load(config_path)  # refuse to install a config the supervisor rejects
    unit_path = rooted(args.prefix, Path("/etc/systemd/system") / UNIT_NAME)
    state_dir = rooted(args.prefix, settings.state_dir)
    unit_text = render_unit(settings)
    steps = [Step(f"write {unit_path}", lambda: write_unit(unit_path, unit_text))]

    group = args.admin_group
    if args.prefix:
        steps.append(Step(f"not creating group {group} on this host (--prefix)"))
    elif group_exists(group):
        steps.append(Step(f"group {group} exists"))
    else:
        steps.append(
            Step(
                f"create group {group} (groupadd --system {group})",
                lambda: add_group(group),
            )
        )
    steps.append(Step(f"create {state_dir} (mode 0711)", lambda: make_state_dir(state_dir)))

    if cfg.admin_group != group:
        steps.append(
            Step(
                f'advice: set admin_group = "{group}" under [hive] in {config_path}, or the '
                f"admin socket is root-only and hivectl needs sudo"
            )
        )
    sandboxes = {a.sandbox for a in cfg.agents}
    if sandboxes & {"bwrap", "auto"} and not shutil.which("bwrap"):
        steps.append(Step("advice: agents use bwrap: apt-get install bubblewrap"))
    steps.append(Step(f"advice: add operators to the group: usermod -aG {group} <user>"))
    if Path("/run/systemd/system").is_dir() and not args.prefix:
        steps.append(
            Step(f"start it: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}")
        )
    else:
        steps.append(
            Step(
                f"on the target host, start it: systemctl daemon-reload && "
                f"systemctl enable --now {UNIT_NAME}"
            )
        )
    return steps


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def add_group(name: str) -> None:
    subprocess.run(["groupadd", "--system", name], check=True)


def write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    tmp.replace(path)  # never a half-written unit, should the install be interrupted


def make_state_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hive.cli.install_systemd", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="the hive.toml the service runs")
    p.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    p.add_argument("--prefix", type=Path, help="install under this root instead of /")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/hive"))
    p.add_argument("--run-dir", type=Path, default=Path("/run/hive"))
    p.add_argument("--admin-group", default=ADMIN_GROUP)
    p.add_argument("--exec", help="the hive-supervisor executable (default: found on PATH)")
    p.add_argument(
        "--path", action="append", default=[], help="extra PATH dir for the service (repeatable)"
    )
    p.add_argument("--print-unit", action="store_true", help="also print the unit text")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        steps = plan(args)
    except ConfigError as exc:
        print(f"install_systemd: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run and not args.prefix and os.geteuid() != 0:
        print("install_systemd: run as root (or use --dry-run / --prefix)", file=sys.stderr)
        return 1
    for step in steps:
        if step.run is None:
            print(step.says)
        elif args.dry_run:
            print(f"would {step.says}")
        else:
            step.run()
            print(f"did {step.says}")
    if args.print_unit:
        print()
        print(render_unit(unit_settings(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
