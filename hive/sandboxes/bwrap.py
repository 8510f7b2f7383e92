"""The bwrap sandbox: bubblewrap with its own user, mount, pid, ipc and uts namespaces.

Inside, the agent is uid 0 in a read-only copy of the host. Writable: its own directory
(``<state>/agents/<name>``), a private /tmp and nothing else. Its agent socket is bound in at
the same path, so the MCP shim connects exactly as it would outside. The hive's state dir
(the db and every other agent), the sockets dir and people's home directories are replaced by
empty read-only tmpfs mounts.

When the supervisor runs as root, bwrap is started through ``setpriv`` as the agent's own
host uid (see ``hive.sandboxes.uids``), so uid 0 inside is an unprivileged uid outside:
a process that escapes the namespaces lands on an account that owns only that agent's files.

>>> from hive.config import AgentConfig
>>> from hive.process import AgentPaths, ProcessSpec
>>> paths = AgentPaths.for_agent("bob", Path("/var/lib/hive"), Path("/run/hive"))
>>> sandbox = BwrapSandbox(as_agent_uid=False)
>>> spec = sandbox.wrap(ProcessSpec(("true",)), AgentConfig("bob", network=False), paths)
>>> "--unshare-net" in spec.argv, spec.argv[-2:]
(True, ('--default-signal=TERM', 'true'))
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec
from hive.sandboxes.base import SandboxError, package_path
from hive.sandboxes.uids import UID_BASE, allocate_uid, allow_traverse, give_to, uid_slot

INSTALL_HINT = "install it with `apt-get install bubblewrap` (NixOS: add pkgs.bubblewrap)"
DEFAULT_HIDDEN = ("/root", "/home")
_DB_FILES = ("hive.db", "hive.db-wal", "hive.db-shm")


@dataclass(frozen=True)
class Limits:
    """Resource limits for every process of a turn, set with prlimit(1) before bwrap starts.

    rlimits are per process, except ``nproc``, which counts every process of the same host
    uid: since each agent has its own uid, it caps the whole agent. Memory is better capped
    by a cgroup (the systemd unit's MemoryMax for the fleet, or an nspawn container per
    agent); ``address_space`` is off by default because node (claude) reserves large virtual
    ranges it never touches.
    """

    nofile: int = 4096
    nproc: int = 1024
    core_bytes: int = 0
    file_bytes: int | None = 8 << 30
    cpu_seconds: int | None = None
    address_space: int | None = None
    tmp_bytes: int = 1 << 30  # size of the private /tmp tmpfs

    def prlimit_args(self) -> list[str]:
        limits = {
            "nofile": self.nofile,
            "nproc": self.nproc,
            "core": self.core_bytes,
            "fsize": self.file_bytes,
            "cpu": self.cpu_seconds,
            "as": self.address_space,
        }
        return [f"--{key}={value}" for key, value in limits.items() if value is not None]


def _find(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = "bubblewrap" if tool == "bwrap" else "util-linux"
        raise SandboxError(
            f"the bwrap sandbox needs `{tool}`, which is not on PATH: "
            f"install it with `apt-get install {package}` (NixOS: it comes with the hive "
            f'module), or set sandbox = "process" for this agent'
        )
    return path


class BwrapSandbox:
    """Runs each turn in a fresh bubblewrap sandbox. See the module docstring."""

    name = "bwrap"

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        uid_base: int = UID_BASE,
        hidden: Iterable[str] = DEFAULT_HIDDEN,
        as_agent_uid: bool | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.uid_base = uid_base
        self.hidden = tuple(Path(p) for p in hidden)
        # Only root may switch to the agent's uid; a developer's unprivileged supervisor
        # still gets the namespaces, with uid 0 inside mapped to its own uid.
        self.as_agent_uid = os.geteuid() == 0 if as_agent_uid is None else as_agent_uid
        self._bwrap = _find("bwrap")
        self._prlimit = _find("prlimit")
        self._env = _find("env")
        self._setpriv = _find("setpriv") if self.as_agent_uid else ""

    # -- prepare: as root, before each turn (after the first, a few stats) ----------------

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        for d in (paths.root, paths.state, paths.work, paths.config):
            if d.is_symlink():
                raise SandboxError(f"agent '{agent.name}': {d} is a symlink; remove it")
        paths.ensure()
        if not self.as_agent_uid:
            return
        uid = allocate_uid(paths.root, self.uid_base)
        give_to(paths.root, uid, uid, always=(paths.state, paths.config))
        self._open_paths(paths)
        if paths.socket.exists() and not paths.socket.is_symlink():
            # Identity is which socket you hold; only this agent's uid may connect to it.
            os.lchown(paths.socket, uid, uid)
            os.chmod(paths.socket, 0o600)

    def _open_paths(self, paths: AgentPaths) -> None:
        """Make the paths bwrap binds resolvable by the agent's uid, and keep the db private.

        bwrap resolves bind sources as the agent's uid, so the hive's own directories above
        the agent dir and the socket get x-for-others (traverse, not list). That would let
        any local user open a world-readable file in the state dir by name, so the db files
        are made 0600 here too.
        """
        sockets_dir = paths.socket.parent.parent
        for d in (paths.hive_state, paths.root.parent, sockets_dir, paths.socket.parent):
            d.mkdir(parents=True, exist_ok=True)
            allow_traverse(d)
        for name in _DB_FILES:
            db = paths.hive_state / name
            if db.exists() and db.stat().st_mode & 0o077:
                os.chmod(db, 0o600)
        for target in (paths.root, paths.socket.parent):
            for parent in target.parents:
                if not parent.stat().st_mode & 0o001:
                    raise SandboxError(
                        f"{parent} is not traversable by other users, so the sandboxed agent "
                        f"cannot reach {target}: run `chmod o+x {parent}`, or move the hive's "
                        f"state/run dirs elsewhere"
                    )

    # -- wrap: once per turn, no IO beyond a stat -----------------------------------------

    def agent_uid(self, paths: AgentPaths) -> int:
        """The host uid the agent runs as (its directory's owner), after prepare()."""
        if not self.as_agent_uid:
            return os.geteuid()
        uid = paths.root.lstat().st_uid
        if uid_slot(uid, self.uid_base) is None:
            raise SandboxError(
                f"agent '{paths.name}': {paths.root} is not owned by an agent uid; "
                f"prepare() must run before the first turn"
            )
        return uid

    def wrap(self, spec: ProcessSpec, agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
        self._check_packages(agent, paths)
        cwd = spec.cwd or paths.work
        # prlimit and setpriv run as root: they get hive's own environment only. Every
        # variable the agent's config names is set by bwrap, after the drop, for the
        # sandboxed program alone (so LD_PRELOAD & co. can never load into root's tools).
        outer_env, agent_env = split_agent_env(spec.env, agent)
        argv = [self._prlimit, *self.limits.prlimit_args(), "--"]
        if self.as_agent_uid:
            uid = str(self.agent_uid(paths))
            argv += [self._setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--"]
        program = spec.argv[0] if spec.argv else ""
        pythonpath = tuple(p for p in spec.env.get("PYTHONPATH", "").split(os.pathsep) if p)
        # A group SIGTERM (the runner's graceful stop) reaches every process of the turn,
        # bwrap's own two included. bwrap does not handle it: the outer one would die at
        # once and --die-with-parent would SIGKILL the sandbox while the agent is still
        # stopping. So bwrap runs with SIGTERM ignored and the agent's program gets the
        # default back: only the agent decides when the sandbox ends.
        argv += [self._env, "--ignore-signal=TERM", self._bwrap]
        argv += self.bwrap_args(agent, paths, cwd, program, pythonpath)
        if not home_is_inside(spec, paths):
            # The supervisor's HOME is hidden or read-only in here; the agent's state dir
            # is where tools keep their config between turns.
            argv += ["--setenv", "HOME", str(paths.state)]
        for key, value in agent_env.items():
            argv += ["--setenv", key, value]
        argv += ["--", self._env, "--default-signal=TERM", *spec.argv]
        return replace(spec, argv=tuple(argv), env=outer_env, cwd=cwd)

    def _check_packages(self, agent: AgentConfig, paths: AgentPaths) -> None:
        """Refuse a package the sandbox hides. Never bind one back in: a package path comes
        from the agent's config, which would then choose what of the host the agent sees."""
        for package in agent.packages:
            real = Path(os.path.realpath(package))
            for hidden in [*self._masks(paths), Path("/tmp")]:
                if real.is_relative_to(hidden):
                    raise SandboxError(
                        f"agent '{agent.name}': package {package} is under {hidden}, which the "
                        "bwrap sandbox hides; install it elsewhere (e.g. /opt or the Nix store)"
                    )

    def bwrap_args(
        self,
        agent: AgentConfig,
        paths: AgentPaths,
        cwd: Path,
        argv0: str = "",
        pythonpath: tuple[str, ...] = (),
    ) -> list[str]:
        args = [
            "--unshare-user", "--uid", "0", "--gid", "0",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            *(["--unshare-net"] if not agent.network else []),
            "--hostname", agent.name,
            # A killed turn takes its whole sandbox with it. No --new-session: the runner
            # already starts each turn in a session of its own, without a terminal (so no
            # TIOCSTI), and staying in that process group lets a group SIGTERM reach the
            # agent's CLI for a graceful stop.
            "--die-with-parent",
            "--ro-bind", "/", "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp",
        ]  # fmt: skip
        masks = self._masks(paths)
        for mask in masks:
            args += ["--tmpfs", str(mask)]
        # What the turn's program runs from (the Python install, hive itself, the CLI's
        # binary) may sit under a hidden home: bring exactly those paths back, read-only,
        # and hide the hive's state again if one of them contains it.
        # /tmp is private (a fresh tmpfs) too: a checkout under /tmp is hidden by it.
        exposed = runtime_paths(argv0, [*masks, Path("/tmp")], pythonpath)
        for path in exposed:
            args += ["--ro-bind", str(path), str(path)]
        for private in (paths.hive_state, paths.socket.parent.parent):
            if any(private.is_relative_to(p) for p in exposed):
                args += ["--tmpfs", str(private)]
                masks.append(private)
        args += ["--bind", str(paths.root), str(paths.root)]
        args += ["--bind", str(paths.socket), str(paths.socket)]
        for mask in masks:
            # Read-only, so a write to another agent's path fails instead of landing in a
            # scratch tmpfs where it looks like it worked.
            args += ["--remount-ro", str(mask)]
        args += ["--chdir", str(cwd)]
        return args

    def _masks(self, paths: AgentPaths) -> list[Path]:
        sockets_dir = paths.socket.parent.parent
        wanted = [paths.hive_state, sockets_dir, *(p for p in self.hidden if p.is_dir())]
        masks: list[Path] = []
        # Parents first; a path already under a mask is hidden with it.
        for p in sorted(set(wanted), key=lambda p: len(p.parts)):
            if not any(p.is_relative_to(m) for m in masks):
                masks.append(p)
        return masks


def runtime_paths(argv0: str, masks: list[Path], pythonpath: tuple[str, ...] = ()) -> list[Path]:
    """Directories a turn needs that a mask would hide: the running Python (venv and base
    install), the hive package, and the program's own directory."""
    import hive

    wanted = {Path(hive.__file__).resolve().parent.parent}
    wanted |= {Path(p).resolve() for p in pythonpath if os.path.isabs(p)}
    if argv0 and os.path.isabs(argv0):
        program = Path(os.path.realpath(argv0))
        wanted.add(program.parent)
        if program == Path(os.path.realpath(sys.executable)):
            # The supervisor's own interpreter: its venv and its base install too.
            wanted |= {Path(sys.prefix), Path(sys.base_prefix), program.parent.parent}
    hidden = [p for p in wanted if any(p.is_relative_to(m) and p != m for m in masks)]
    # Parents first; drop paths inside another exposed path.
    out: list[Path] = []
    for p in sorted(hidden, key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(q) for q in out):
            out.append(p)
    return out


def split_agent_env(
    env: dict[str, str], agent: AgentConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """``env`` as (what root's wrapper processes may get, what only the sandboxed program
    gets): every variable the agent's config names goes to the second, whatever its value,
    and so does PATH with the bin/ of the agent's packages ahead."""
    inner = {k: env[k] for k in agent.env if k in env}
    outer = {k: v for k, v in env.items() if k not in inner}
    if "PATH" in inner:
        outer["PATH"] = os.defpath  # root's tools never search the agent's PATH
    if agent.packages:  # on the sandboxed program's PATH alone, for the same reason
        inner["PATH"] = package_path(agent, inner.get("PATH") or env.get("PATH") or os.defpath)
    return outer, inner


def home_is_inside(spec: ProcessSpec, paths: AgentPaths) -> bool:
    """True when the turn's HOME is already a directory of the agent's own."""
    home = spec.env.get("HOME")
    return home is not None and Path(home).is_relative_to(paths.root)


@functools.cache
def bwrap_usable(uid_base: int = UID_BASE) -> bool:
    """True when a bwrap sandbox starts on this host (tools present, user namespaces on)."""
    try:
        sandbox = BwrapSandbox(uid_base=uid_base)
    except SandboxError:
        return False
    argv = [sandbox._bwrap, "--unshare-user", "--uid", "0", "--ro-bind", "/", "/", "true"]
    if sandbox.as_agent_uid:
        uid = str(uid_base)
        argv = [sandbox._setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", *argv]
    probe = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return probe.returncode == 0
