"""A throwaway real systemd for tests: PID 1 of fresh namespaces, driven with systemctl.

    with boot_systemd(tmp_path_factory.mktemp("systemd")) as sd:
        sd.install_hive(CONFIG, dropin="[Service]\\nWatchdogSec=3\\n")
        sd.systemctl("start", "hive-supervisor")
        sd.show("hive-supervisor", "ActiveState", "NRestarts")
        sd.journal("-u", "hive-supervisor")

The filesystem is the host's, so booting systemd naively is destructive: at boot
systemd-tmpfiles empties /tmp (the host's /tmp, with everyone's work in it), and units the
host has enabled (apt timers, udev, a database server) would start against host state.
Before ``exec systemd`` this module, running as PID 1 inside the new namespaces:

- mounts tmpfs on /run, /tmp, /var/tmp and /var/log/journal;
- makes /etc and /var private overlays (writes land in a tmpfs upper layer), so that
  ``install_systemd``, ``useradd`` and the hive's state dir change nothing on the host;
- masks (symlinks to /dev/null in /run/systemd/system) the tmpfiles units, avahi, and every
  unit any ``.wants``/``.requires`` dir would pull in, except journald's own;
- then checks all of that from /proc/self/mountinfo (``guard``) and refuses to exec
  systemd if anything is missing.

The host reads back through ``/proc/<pid>/root`` (``sd.path``), or through ``sd.share``, a
host dir bound at ``SHARE_IN_NS`` before the tmpfs mounts. Every booted systemd is powered
off, or killed by its PID, when the ``with`` block ends, whatever happened in it; it also
dies with the test process (parent-death signal), so nothing outlives a crashed pytest.

This file is also the program that prepares the namespace (``__main__``): stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SYSTEMD = "/lib/systemd/systemd"
SHARE_IN_NS = "/run/hive-test-host"  # the host's share dir, inside the namespace
UNIT_DIR = "/run/systemd/system"  # namespace-private: on the /run tmpfs
TMPFS_PATHS = ("/run", "/tmp", "/var/tmp", "/var/log/journal")
OVERLAY_PATHS = ("/etc", "/var")
MUST_MASK = (
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "avahi-daemon.service",
    "avahi-daemon.socket",
)
# Never wanted by anything we boot, but each would act on state shared with the host.
ALSO_MASK = ("systemd-remount-fs.service", "systemd-sysusers.service", "ldconfig.service")
# What may start although something wants it: the journal (tests read it).
ALLOWED = frozenset(
    {
        "systemd-journald.service",
        "systemd-journald.socket",
        "systemd-journald-dev-log.socket",
        "systemd-journal-flush.service",
    }
)
UNIT_SEARCH_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
BOOT_TARGET = "hive-test.target"
BOOT_TARGET_TEXT = """[Unit]
Description=hive tests: a minimal system with a journal
Requires=basic.target
Wants=systemd-journald.service
After=basic.target
AllowIsolate=yes
"""
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
REFUSED_EXIT = 3  # the guard refused to boot

# The hive install that the tests run (this checkout's virtualenv).
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's own bin dir
HIVE_UNIT = "hive-supervisor.service"
HIVE_CONFIG_IN_NS = "/etc/hive/hive.toml"


# --- inside the namespace (PID 1, before exec systemd) ----------------------------------


def units_to_mask() -> list[str]:
    """MUST_MASK plus every unit that some .wants/.requires dir names, but journald's."""
    names = {*MUST_MASK, *ALSO_MASK}
    for base in UNIT_SEARCH_DIRS:
        try:
            dirs = [d for d in os.scandir(base) if d.name.endswith((".wants", ".requires"))]
        except FileNotFoundError:
            continue
        for d in dirs:
            names.update(e.name for e in os.scandir(d.path))
    return sorted(n for n in names if n not in ALLOWED or n in MUST_MASK)


def mounts_by_point(mountinfo: str) -> dict[str, str]:
    """Mount point -> file system type of the topmost mount there (later lines stack on top)."""
    top: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) >= 5 and rest:
            point = parts[4].replace("\\040", " ")
            top[point] = rest.split()[0]
    return top


def namespace_problems(pid: int, own_ns: str, host_ns: str) -> list[str]:
    """Checked before any mount: mounting tmpfs on /run or /tmp in the host's own mount
    namespace would hide the host's files from everything running there."""
    problems = []
    if pid != 1:
        problems.append(f"not PID 1 of a new PID namespace (pid {pid})")
    if own_ns == host_ns:
        problems.append("still in the host's mount namespace")
    return problems


def guard(mountinfo: str, unit_dir: str, pid: int, own_ns: str, host_ns: str) -> list[str]:
    """Everything that must hold before systemd may boot; one line per problem (none: boot)."""
    problems = namespace_problems(pid, own_ns, host_ns)
    top = mounts_by_point(mountinfo)
    for path in TMPFS_PATHS:
        if top.get(path) != "tmpfs":
            problems.append(f"{path} is not a private tmpfs (found {top.get(path)})")
    for path in OVERLAY_PATHS:
        if top.get(path) != "overlay":
            problems.append(f"{path} is not a private overlay (found {top.get(path)})")
    for name in MUST_MASK:
        link = os.path.join(unit_dir, name)
        if not os.path.islink(link) or os.readlink(link) != "/dev/null":
            problems.append(f"{name} is not masked in {unit_dir}")
    return problems


KEEP_IN_NS = "/run/hive-test-keep"  # where kept host dirs wait while /tmp is covered
HIDDEN_BY_TMPFS = ("/tmp", "/var/tmp")


def paths_to_keep() -> list[str]:
    """The checkout and the interpreter the tests run from, where the namespace's tmpfs
    would hide them (a clone under /tmp, as CI may make): they are bound back in."""
    wanted = sorted({str(REPO), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})
    hidden = [p for p in wanted if any(p.startswith(t + "/") for t in HIDDEN_BY_TMPFS)]
    return [p for p in hidden if not any(p.startswith(q + "/") for q in hidden if q != p)]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def prepare_namespace(share: str) -> None:
    """The mounts and masks, in an order that keeps the host's dirs reachable: the share is
    bound (from wherever it is, perhaps under /tmp) before /tmp is covered."""
    _mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", "/run")
    os.makedirs(SHARE_IN_NS)
    _mount("--bind", share, SHARE_IN_NS)
    kept = paths_to_keep()
    for i, path in enumerate(kept):
        os.makedirs(f"{KEEP_IN_NS}/{i}")
        _mount("--rbind", path, f"{KEEP_IN_NS}/{i}")
    for path in OVERLAY_PATHS:
        layer = "/run/hive-test-overlay" + path
        os.makedirs(layer + "/upper")
        os.makedirs(layer + "/work")
        opts = f"lowerdir={path},upperdir={layer}/upper,workdir={layer}/work"
        _mount("-t", "overlay", "-o", opts, "overlay", path)
    for path in TMPFS_PATHS[1:]:
        os.makedirs(path, exist_ok=True)
        mode = "1777" if "tmp" in path else "2755"
        _mount("-t", "tmpfs", "-o", f"mode={mode},nosuid,nodev", "tmpfs", path)
    for i, path in enumerate(kept):
        os.makedirs(path, exist_ok=True)
        _mount("--rbind", f"{KEEP_IN_NS}/{i}", path)
    os.makedirs(UNIT_DIR)
    for name in units_to_mask():
        os.symlink("/dev/null", os.path.join(UNIT_DIR, name))
    with open(os.path.join(UNIT_DIR, BOOT_TARGET), "w") as f:
        f.write(BOOT_TARGET_TEXT)


def refuse(problems: list[str]) -> None:
    if problems:
        for line in problems:
            print(f"systemd_boot: refusing to boot systemd: {line}", file=sys.stderr)
        sys.exit(REFUSED_EXIT)


def namespace_main(share: str, host_ns: str) -> None:
    own_ns = os.readlink("/proc/self/ns/mnt")
    refuse(namespace_problems(os.getpid(), own_ns, host_ns))
    prepare_namespace(share)
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    refuse(guard(mountinfo, UNIT_DIR, os.getpid(), own_ns, host_ns))
    # container=: systemd skips what only a machine's own init should do (clock, hostname
    # from hardware, udev-ish units conditioned on !container).
    env = {"container": "hive-test", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    os.execve(
        SYSTEMD,
        [SYSTEMD, "--system", f"--unit={BOOT_TARGET}"],
        env,
    )


# --- on the host --------------------------------------------------------------------------


def wait_until(check: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def _set_parent_death_signal() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def own_cgroups() -> list[Path]:
    """This process's cgroup in every hierarchy systemd uses (cgroup v2, name=systemd and
    the v1 controllers but cpuset, which systemd leaves alone and which needs its cpus and
    mems set before it takes a process)."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            paths[controllers] = path
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            fstype, _, options = rest.split()[:3]
            point = fields.split()[4]
            if fstype == "cgroup2":
                key = ""
            elif fstype == "cgroup":
                opts = set(options.split(","))
                keys = [k for k in paths if k and set(k.split(",")) <= opts]
                if not keys or "cpuset" in opts:
                    continue
                key = keys[0]
            else:
                continue
            if key in paths:
                found.append(Path(point) / paths[key].lstrip("/"))
    return found


@dataclass
class CgroupHome:
    """A cgroup of its own, in every hierarchy, for one booted systemd: with --cgroup it
    becomes that systemd's root, so two test systemds (or a test and its host) never
    manage the same cgroups. Removed, bottom up, after the systemd is gone."""

    dirs: list[Path]

    @classmethod
    def create(cls, name: str) -> CgroupHome:
        home = cls([base / name for base in own_cgroups()])
        for d in home.dirs:
            d.mkdir()
        return home

    def enter(self) -> None:
        """In the child, before exec: move this process in (then its children start there)."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(pid)

    def remove(self) -> list[str]:
        left = []
        for top in self.dirs:
            for here, _, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(here)
                except OSError as exc:
                    left.append(f"{here}: {exc.strerror}")
        return left


@dataclass
class BootedSystemd:
    """A running systemd in its namespaces; ``pid`` is its PID on the host."""

    work: Path  # host dir: console log, share
    process: subprocess.Popen[bytes]  # unshare
    pid: int = 0
    users: list[str] = field(default_factory=list)
    mark: str = ""  # a journal cursor a test may keep (e.g. where the current test began)

    @property
    def share(self) -> Path:
        """Host side of SHARE_IN_NS."""
        return self.work / "share"

    @property
    def console_log(self) -> Path:
        return self.work / "console.log"

    def path(self, inside: str) -> Path:
        """A path in the namespace's file system, as the host reaches it."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    # --- running things inside ------------------------------------------------------------

    def nsenter(self, user: str | None = None) -> list[str]:
        cmd = ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-C", "-n"]
        if user is not None:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return cmd

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60,
        user: str | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespaces (as ``user``, if given); its output as text."""
        result = subprocess.run(
            [*self.nsenter(user), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, **env} if env is not None else None,
            cwd="/",
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str, after: str | None = None) -> str:
        """journalctl's output (after a sync, so everything logged so far is in it), only
        the entries after the cursor ``after`` (from ``cursor``) if given."""
        self.run("journalctl", "--sync", check=False)
        since = [f"--after-cursor={after}"] if after else []
        return self.run("journalctl", "--no-pager", "-o", "cat", *since, *args).stdout

    def cursor(self) -> str:
        """The journal's position now: ``journal(after=...)`` shows only what follows."""
        self.run("journalctl", "--sync", check=False)
        out = self.run("journalctl", "--no-pager", "-n", "1", "--show-cursor", "-q").stdout
        return out.rsplit("-- cursor: ", 1)[1].strip()

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, mode)

    def wait_for(self, check: Callable[[], T], timeout: float = 60, what: str = "") -> T:
        return wait_until(check, timeout, what or "condition")

    def wait_state(self, unit: str, state: str, timeout: float = 60) -> dict[str, str]:
        """Until ``unit``'s ActiveState is ``state``; its properties then."""
        props = ("ActiveState", "SubState", "Result", "NRestarts", "MainPID")
        last: dict[str, str] = {}

        def reached() -> dict[str, str] | None:
            nonlocal last
            last = self.show(unit, *props)
            return last if last.get("ActiveState") == state else None

        try:
            return wait_until(reached, timeout, f"{unit} to be {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last {last}\n{self.journal('-u', unit)}") from None

    # --- users ---------------------------------------------------------------------------

    def add_user(self, name: str, groups: Sequence[str] = ()) -> None:
        """A real user in the namespace's private /etc (the host's /etc is untouched)."""
        extra = ["--groups", ",".join(groups)] if groups else []
        self.run("useradd", "--no-create-home", "--shell", "/bin/sh", *extra, name)
        self.users.append(name)

    # --- hive --------------------------------------------------------------------------

    def install_hive(self, config_text: str, dropin: str = "", env: str = "") -> str:
        """hive.toml at /etc/hive/hive.toml, then the unit installed by hive-install-systemd
        exactly as an operator runs it (no --prefix: the namespace's /etc and /var are
        private), plus a drop-in (test values such as a short WatchdogSec) and
        /etc/hive/env. Returns install_systemd's output."""
        self.write(HIVE_CONFIG_IN_NS, config_text)
        self.write("/etc/hive/env", env, 0o600)
        out = self.run(
            str(VENV_BIN / "hive-install-systemd"),
            "--config", HIVE_CONFIG_IN_NS,
            "--exec", str(VENV_BIN / "hive-supervisor"),
        ).stdout  # fmt: skip
        kept = paths_to_keep()
        # The unit's PrivateTmp would hide a checkout under /tmp from the daemon it starts.
        checkout = "[Service]\nBindReadOnlyPaths=" + " ".join(kept) + "\n" if kept else ""
        self.set_dropin(checkout, name="40-checkout.conf")
        self.set_dropin(dropin)
        return out

    def set_dropin(self, text: str, unit: str = HIVE_UNIT, name: str = "50-test.conf") -> None:
        """Replace the test's drop-in ``name`` for ``unit`` (empty: none) and reload."""
        path = self.path(f"{UNIT_DIR}/{unit}.d/{name}")
        if text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        else:
            path.unlink(missing_ok=True)
        self.systemctl("daemon-reload")

    def reset_hive(self) -> None:
        """Stop the hive, forget its failures and restarts, and remove its state."""
        self.systemctl("stop", HIVE_UNIT, check=False)
        self.systemctl("reset-failed", HIVE_UNIT, check=False)
        self.run("rm", "-rf", "/var/lib/hive", "/etc/hive", check=False)
        self.set_dropin("")

    # --- lifecycle -----------------------------------------------------------------------

    def _find_pid1(self) -> int:
        """unshare --fork's child: PID 1 of the namespaces."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = children.read_text().split() if children.exists() else []
        return int(found[0]) if found else 0

    def wait_booted(self) -> None:
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the namespace's init exited {self.process.returncode}:\n{self.console()}"
                )
            if not self.pid:
                self.pid = self._find_pid1()
            if not self.pid or Path(f"/proc/{self.pid}/comm").read_text().strip() != "systemd":
                return False
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            return state in ("running", "degraded")

        wait_until(started, BOOT_TIMEOUT, "systemd to boot")

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-8000:]
        except OSError:
            return "(no console log)"

    def poweroff(self) -> None:
        """systemctl poweroff; SIGKILL to PID 1 (by its PID) if it is not gone in time."""
        if self.process.poll() is None and self.pid:
            with contextlib.suppress(subprocess.SubprocessError, AssertionError):
                self.run("systemctl", "poweroff", check=False, timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        if self.process.poll() is None:
            if self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)  # the namespace's init: all of it goes
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def boot_systemd(work: Path) -> Iterator[BootedSystemd]:
    """Boot a systemd in fresh namespaces (see the module's doc), yield it, power it off."""
    if os.geteuid() != 0:
        raise AssertionError("booting a test systemd needs root (CI runs the tests as root)")
    work.mkdir(parents=True, exist_ok=True)
    (work / "share").mkdir(exist_ok=True)
    # A canary in the host's /tmp: if it is gone afterwards, the host's /tmp was emptied.
    canary = tempfile.NamedTemporaryFile(prefix="hive-systemd-canary-", dir="/tmp")  # noqa: SIM115
    host_ns = os.readlink("/proc/self/ns/mnt")
    cgroups = CgroupHome.create(f"hive-test-systemd-{os.getpid()}-{work.name}")

    def in_child() -> None:
        _set_parent_death_signal()
        cgroups.enter()

    unshare = [
        "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--cgroup",
        "--uts", "--ipc", "--net", "--propagation", "private", "--mount-proc",
    ]  # fmt: skip
    with open(work / "console.log", "wb") as log:
        process = subprocess.Popen(
            [*unshare, sys.executable, __file__, str(work / "share"), host_ns],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=in_child,  # runs between fork and exec: prctl and cgroup writes only
            start_new_session=True,
        )
    sd = BootedSystemd(work, process)
    try:
        sd.wait_booted()
        yield sd
    finally:
        sd.poweroff()
        left = cgroups.remove()
        intact = os.path.exists(canary.name)
        canary.close() if intact else None
        if not intact:
            raise AssertionError("DANGER: the host's /tmp lost a file while systemd ran")
        if left:
            raise AssertionError(f"cgroups of the test systemd left behind: {left}")


if __name__ == "__main__":
    namespace_main(sys.argv[1], sys.argv[2])
