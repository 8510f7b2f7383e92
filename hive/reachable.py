"""Can the agents' own uids reach what their sandboxes need? Checked before a hive starts.

A bwrap agent runs as a uid of its own (when the supervisor is root), and that uid is
"others" to every directory on the host. Its turns exec hive's helper interpreter, import
hive's code, and bind the state and socket dirs; if any of them lies below a directory
closed to others (a checkout or a Python under ``/root``, mode 0700), every turn fails
(``Permission denied``) and the agent crash-loops to ``failed``. Said once at start instead,
one line per closed directory, naming it, what lies behind it and the fix.

Passing is not always enough: Python lists each directory on its import path (and each
package directory) to find a module there, and a uid that may pass a directory but not read
it finds nothing in it (``ModuleNotFoundError``). So the roots hive and msgpack are imported
from, and their package directories, must also be readable by others (``chmod o+rx``): a
fresh clone made in a ``mktemp -d`` directory (mode 0700) is one.

>>> closed_ancestor(Path("/usr/bin/env")) is None
True
>>> unlistable(Path("/usr/bin")) is None
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


def unlistable(directory: Path) -> Path | None:
    """``directory`` itself when others may not both list and pass it (Python must list an
    import root to find a module in it), else None."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return None
    want = stat.S_IROTH | stat.S_IXOTH
    return directory if mode & want != want else None


def import_dirs() -> list[tuple[Path, str]]:
    """The directories sandboxed helpers list to import hive and msgpack: each package's
    directory and the import root above it."""
    import msgpack

    import hive

    out: list[tuple[Path, str]] = []
    for module, name in ((hive, "hive"), (msgpack, "msgpack")):
        package = Path(os.path.abspath(str(module.__file__))).parent
        out.append((package, f"{name}'s package directory"))
        out.append((package.parent, f"the import root {name} is found in"))
    return out


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


def unlistable_dirs(dirs: Sequence[tuple[Path, str]]) -> dict[Path, list[str]]:
    """Each import directory that others can pass but not list, and what it is."""
    out: dict[Path, list[str]] = {}
    for directory, what in dirs:
        for path in dict.fromkeys([directory, directory.resolve()]):
            # A directory with no x for others is reported as closed (with the o+rx fix).
            if unlistable(path) is not None and stat.S_IXOTH & path.stat().st_mode:
                out.setdefault(path, []).append(what)
    return out


def describe_unlistable(directory: Path, what: list[str], who: str) -> str:
    """The one line for one import directory others cannot list."""
    mode = stat.S_IMODE(directory.stat().st_mode)
    return (
        f"{directory} ({' and '.join(what)}) cannot be listed by other users (mode "
        f"{mode:04o}), so {who} cannot import hive from it: run `chmod o+rx {directory}`, or "
        "install hive where they can read it"
    )


def describe(closed: Path, behind: list[str], who: str, *, listed: bool = False) -> str:
    """The one line for one closed directory (``listed``: Python must list it too)."""
    mode = stat.S_IMODE(closed.stat().st_mode)
    more = f" and {len(behind) - 1} more" if len(behind) > 1 else ""
    fix = (
        f"`chmod o+rx {closed}` (Python lists it to import from it)"
        if listed
        else f"`chmod o+x {closed}` (it lets others pass, not list)"
    )
    return (
        f"{closed} is closed to other users (mode {mode:04o}), so {who} cannot reach "
        f"{behind[0]}{more}: run {fix}, or "
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
    return report(needed(cfg, boxed), who)


def report(targets: Sequence[tuple[Path, str]], who: str) -> list[str]:
    """The lines for ``targets`` and for the import directories of hive and msgpack: one per
    closed directory, then one per import directory others may pass but not list."""
    imports = import_dirs()
    unlisted = unlistable_dirs(imports)
    import_paths = {d for d, _ in imports}
    closed = [
        describe(d, behind, who, listed=d in import_paths)
        for d, behind in closed_dirs(targets).items()
    ]
    return closed + [describe_unlistable(d, what, who) for d, what in unlisted.items()]


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
    return report(targets, who)


def main() -> None:
    """``python -m hive.reachable``: exit 2 with one line per closed directory if agents'
    uids cannot reach this installation (``./dev test`` runs it first)."""
    lines = installation_problems()
    for line in lines:
        print(f"hive: {line}", file=sys.stderr)
    raise SystemExit(2 if lines else 0)


if __name__ == "__main__":
    main()
