"""Can the agents' own uids reach what their sandboxes need? Checked before a hive starts.

A bwrap agent runs as a uid of its own (when the supervisor is root), and that uid is
"others" to every directory on the host. Its turns exec hive's helper interpreter, import
hive's code, and bind the state and socket dirs; if any of them lies below a directory
closed to others (a checkout or a Python under ``/root``, mode 0700), every turn fails
(``Permission denied``) and the agent crash-loops to ``failed``. Said once at start instead,
one line per closed directory, naming it, what lies behind it and the fix.

>>> closed_ancestor(Path("/usr/bin/env")) is None
True
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from hive.config import AgentConfig, HiveConfig


def closed_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` (from ``/`` down) that other users cannot pass
    (no x bit for others); None if every existing one is open."""
    for parent in reversed(Path(os.path.abspath(path)).parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            return None  # made later, by hive, with the modes it needs
        if not mode & stat.S_IXOTH:
            return parent
    return None


def needed(cfg: HiveConfig, agents: Sequence[AgentConfig]) -> list[tuple[Path, str]]:
    """What an agent's uid must reach, and what it is."""
    import msgpack

    import hive
    from hive.runtimes.base import helper_python

    python, python_env = helper_python(cfg)
    out = [
        (Path(python), "the interpreter of hive's helpers in the sandbox ([hive] agent_python)"),
        (Path(hive.__file__), "hive's own code, which those helpers import"),
        (Path(msgpack.__file__), "msgpack, which those helpers import"),
        (cfg.state_dir / "agents", "the agents' directories in the state dir"),
        (cfg.sockets_dir / "agents", "the agents' sockets"),
    ]
    out += [
        (Path(p), "hive's code") for p in python_env.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    claude = shutil.which(cfg.claude_bin) if any(a.runtime == "claude" for a in agents) else None
    if claude:
        out.append((Path(claude), "the claude CLI ([hive] claude_bin)"))
    return out


def closed_dirs(targets: Sequence[tuple[Path, str]]) -> dict[Path, list[str]]:
    """Each closed directory, and what lies behind it (the path as named and as resolved:
    the kernel walks both a link and where it points)."""
    out: dict[Path, list[str]] = {}
    for target, what in targets:
        for path in dict.fromkeys([Path(os.path.abspath(target)), target.resolve()]):
            closed = closed_ancestor(path)
            if closed is not None:
                out.setdefault(closed, []).append(f"{path} ({what})")
    return out


def describe(closed: Path, behind: list[str], who: str) -> str:
    """The one line for one closed directory."""
    mode = stat.S_IMODE(closed.stat().st_mode)
    more = f" and {len(behind) - 1} more" if len(behind) > 1 else ""
    return (
        f"{closed} is closed to other users (mode {mode:04o}), so {who} cannot reach "
        f"{behind[0]}{more}: run `chmod o+x {closed}` (it lets others pass, not list), or "
        f"keep hive's checkout or install, its Python and the state dir outside {closed} "
        "([hive] agent_python may name an interpreter they can reach, e.g. /usr/bin/python3)"
    )


def problems(cfg: HiveConfig, agents: Sequence[AgentConfig]) -> list[str]:
    """One line per directory that keeps the uid-switched (bwrap) agents from what their
    turns need; empty when the supervisor is not root (no uid switch) or none run in bwrap."""
    if os.geteuid() != 0:
        return []
    from hive.control.privilege import resolved_sandbox

    boxed = [a for a in agents if resolved_sandbox(a.sandbox) == "bwrap"]
    if not boxed:
        return []
    names = ", ".join(f"'{a.name}'" for a in boxed)
    who = (
        f"the bwrap agents {names}, each running as its own uid,"
        if len(boxed) > 1
        else f"the bwrap agent {names}, which runs as its own uid,"
    )
    return [describe(d, behind, who) for d, behind in closed_dirs(needed(cfg, boxed)).items()]


def installation_problems() -> list[str]:
    """The lines for this installation's own code (hive, msgpack): what sandboxed helpers
    import wherever the interpreter comes from (the test suite's bwrap agents run Debian's
    /usr/bin/python3 on this checkout's code)."""
    import msgpack

    import hive

    if os.geteuid() != 0:
        return []
    targets = [
        (Path(hive.__file__), "hive's code, which sandboxed helpers import"),
        (Path(msgpack.__file__), "msgpack, which they import too"),
    ]
    who = "agents in bwrap sandboxes (each its own uid, as under a root supervisor)"
    return [describe(d, behind, who) for d, behind in closed_dirs(targets).items()]


def main() -> None:
    """``python -m hive.reachable``: exit 2 with one line per closed directory if agents'
    uids cannot reach this installation (``./dev test`` runs it first)."""
    lines = installation_problems()
    for line in lines:
        print(f"hive: {line}", file=sys.stderr)
    raise SystemExit(2 if lines else 0)


if __name__ == "__main__":
    main()
