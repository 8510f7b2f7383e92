"""A demo hive: a manager and two scripted workers exchanging work, printed as it happens.

python -m hive.cli.demo [--state-dir demo-state] [--seconds N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from hive.client import TrioClient
from hive.config import HiveConfig


def describe(update: dict[str, Any]) -> str | None:
    """One line for a person, or None for updates not worth a line."""
    kind, data = update.get("kind"), update.get("data") or {}
    if kind in ("message", "operator_message"):
        return f"  ✉  {data['from']} → {data['to']}: {data['body']}"
    if kind == "turn_ended":
        lt = data.get("last_turn") or {}
        return (
            f"  ⏹  {data['agent']} turn {data['turn_id']} ended: {lt.get('exit_class')} "
            f"in {lt.get('duration', 0):.2f}s {lt.get('detail') or ''}".rstrip()
        )
    if kind == "turn_started":
        n = len(data.get("message_ids") or [])
        why = f"{n} message(s)" if n else f"kick: {data.get('kick_note') or '-'}"
        return f"  ▶  {data['agent']} turn {data['turn_id']} started ({why})"
    if kind == "event":
        return (
            f"  ⚠  {data['agent']}: {data['kind']} {data.get('detail') or data.get('reason') or ''}"
        )
    if kind == "gap":
        return "  …  (missed some updates)"
    return None


async def watch(cfg: HiveConfig, seconds: float | None) -> None:
    from hive.daemon import run_hive

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: run_hive(cfg, stop=stop, task_status=task_status))
        admin = cfg.sockets_dir / "admin.sock"
        print(f"hive is up: state in {cfg.state_dir}, admin socket {admin}")
        if cfg.dashboard:
            token = (cfg.state_dir / "operator-token").read_text().strip()
            print(f"dashboard: http://{cfg.dashboard_host}:{cfg.dashboard_port}/  (token: {token})")
        print(f"try in another shell: .venv/bin/hivectl --socket {admin} list\n")
        async with TrioClient.connect(admin) as client:
            await client.call(
                "subscribe",
                kinds=["message", "operator_message", "turn_started", "turn_ended", "event"],
            )
            await client.call("kick", names=["manager"], note="start the demo")
            deadline = trio.current_time() + seconds if seconds else float("inf")
            with trio.move_on_at(deadline):
                async for frame in client.pushes:
                    if frame.get("push") != "state":
                        continue
                    line = describe(frame["data"])
                    if line:
                        print(time.strftime("%H:%M:%S") + line, flush=True)
        stop.set()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="hive-demo", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, default=Path("demo-state"))
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--log-level", default="ERROR")
    p.add_argument("--dashboard-port", type=int, default=8417)
    p.add_argument("--no-dashboard", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    text = resources.files("hive").joinpath("demo.toml").read_text()
    cfg = HiveConfig.from_toml_text(text).with_overrides(
        state_dir=args.state_dir.resolve(),
        dashboard=not args.no_dashboard,
        dashboard_port=args.dashboard_port,
    )
    from hive.statelock import StateDirBusy, lock_state_dir

    try:
        lock_state_dir(cfg.state_dir)
    except StateDirBusy as exc:
        sys.exit(f"hive-demo: {exc}")
    try:
        trio.run(watch, cfg, args.seconds)
    except* KeyboardInterrupt:
        pass  # Ctrl-C: the hive has stopped cleanly; say so, no traceback
    print("\nhive stopped; its state is kept in", cfg.state_dir)


if __name__ == "__main__":
    main()
