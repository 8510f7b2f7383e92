"""The nspawn sandbox: names, the container conf it trusts, and the command it generates.

systemd cannot boot a container on this machine (no systemd as PID 1), so the generated
command is run against a stand-in "container": a process holding its own user (uid 0 inside
= the agent's block outside), mount, pid, ipc, uts and network namespaces, with the agent's
dir and the sockets dir bound in, as the NixOS module declares them. ``machinectl show -p
Leader`` is replaced by reading the stand-in's pid from a file; the rest is the real command.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hive.process import ProcessSpec
from hive.sandboxes import NspawnSandbox, SandboxError, container_name, get_sandbox
from hive.sandboxes.uids import preferred_slot, slot_uid
from tests.sandbox_env import SANDBOX_PYTHON, HiveLayout, agent, make_layout, probe_result, run


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


def write_conf(conf_dir: Path, machine: str, private_users: str) -> None:
    # The shape nixos-containers.nix writes to /etc/nixos-containers/<name>.conf.
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / f"{machine}.conf").write_text(
        "SYSTEM_PATH=/nix/store/abc-nixos-system-h-bob\n"
        "COPY_RESOLV_CONF=1\n"
        "PRIVATE_NETWORK=1\n"
        f"PRIVATE_USERS={private_users}\n"
        'INTERFACES=""\nMACVLANS=""\n'
        'EXTRA_NSPAWN_FLAGS=" --bind=/var/lib/hive/agents/bob:/var/lib/hive/agents/bob"\n'
    )


def test_container_names_follow_nixos_containers_limit() -> None:
    assert container_name("abcdefghi") == "h-abcdefghi"
    with pytest.raises(SandboxError) as err:
        container_name("abcdefghij")
    message = str(err.value)
    assert "'h-abcdefghij' has 12 characters" in message
    assert "at most 9 characters" in message and "bwrap" in message


def test_wrap_enters_the_running_container_as_its_root(layout: HiveLayout) -> None:
    sandbox = NspawnSandbox()
    spec = ProcessSpec(("claude", "-p", "hi there"), env={"A": "1"})
    wrapped = sandbox.wrap(spec, agent("bob"), layout.bob)
    assert wrapped.argv[:2] == ("/bin/sh", "-c")
    script = wrapped.argv[2]
    assert "leader=$(machinectl show --property=Leader --value h-bob)" in script
    assert (
        'exec nsenter --target "$leader" --all --setuid 0 --setgid 0 --wdns="$wd" -- "$@"' in script
    )
    assert "systemctl start container@$0" in script
    assert wrapped.argv[3:] == ("h-bob", str(layout.bob.work), "claude", "-p", "hi there")
    assert wrapped.env == {"A": "1", "HOME": str(layout.bob.state)}
    assert wrapped.cwd == layout.bob.root


def test_prepare_chowns_the_agent_dir_to_the_containers_uid_block(
    layout: HiveLayout, tmp_path: Path
) -> None:
    uid = slot_uid(preferred_slot("bob"))
    write_conf(tmp_path, "h-bob", str(uid))
    sandbox = NspawnSandbox(conf_dir=tmp_path)
    assert sandbox.container_uid("bob") == uid
    (layout.bob.state / "notes.md").write_text("mine")
    sandbox.prepare(agent("bob"), layout.bob)
    for p in (layout.bob.root, layout.bob.state / "notes.md", layout.bob.socket):
        assert (p.stat().st_uid, p.stat().st_gid) == (uid, uid)
    assert layout.bob.root.stat().st_mode & 0o777 == 0o700


def test_prepare_refuses_undeclared_or_unmapped_containers(
    layout: HiveLayout, tmp_path: Path
) -> None:
    sandbox = NspawnSandbox(conf_dir=tmp_path)
    with pytest.raises(SandboxError, match=r"declare the agent in services\.hive\.agents"):
        sandbox.prepare(agent("bob"), layout.bob)
    for value in ("pick", "no", "0"):
        write_conf(tmp_path, "h-bob", value)
        with pytest.raises(SandboxError, match="needs a numeric uid base"):
            sandbox.prepare(agent("bob"), layout.bob)


def test_nspawn_needs_systemd_and_says_so() -> None:
    if Path("/run/systemd/system").is_dir():
        assert get_sandbox("nspawn").name == "nspawn"
    else:
        with pytest.raises(SandboxError, match="booted with systemd"):
            get_sandbox("nspawn")


class StandInContainer:
    """Namespaces like container h-bob's, held by a waiting process (bwrap builds them)."""

    def __init__(self, layout: HiveLayout, uid: int, leader_file: Path) -> None:
        paths = layout.bob
        argv = [
            "setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups",
            "bwrap", "--unshare-all", "--uid", "0", "--gid", "0", "--die-with-parent",
            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--tmpfs", str(layout.state), "--tmpfs", str(layout.run),
            "--bind", str(paths.root), str(paths.root),
            # As the module binds it: the whole sockets dir, read-only.
            "--ro-bind", str(paths.socket.parent), str(paths.socket.parent),
            SANDBOX_PYTHON, "-c", "import sys; print('ready', flush=True); sys.stdin.read()",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"ready\n"
        (leader,) = [
            p
            for p in psutil.Process(self.proc.pid).children(recursive=True)
            if p.name().startswith("python")
        ]
        leader_file.write_text(f"{leader.pid}\n")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_the_generated_command_runs_the_turn_inside_unprivileged(
    layout: HiveLayout, tmp_path: Path
) -> None:
    uid = slot_uid(preferred_slot("bob"))
    write_conf(tmp_path, "h-bob", str(uid))
    sandbox = NspawnSandbox(
        conf_dir=tmp_path, leader_command=("cat", str(tmp_path / "{machine}.leader"))
    )
    bob = agent("bob", network=False)
    sandbox.prepare(bob, layout.bob)
    container = StandInContainer(layout, uid, tmp_path / "h-bob.leader")
    try:
        spec = sandbox.wrap(
            ProcessSpec(layout.probe_args(layout.bob, layout.alice)), bob, layout.bob
        )
        result = probe_result(run(spec))
    finally:
        container.stop()
    assert result["uid"] == 0
    assert result["uid_map"] == ["0", str(uid), "1"]
    assert result["cwd"] == str(layout.bob.work)
    assert result["write_own"] == ["ok", str(layout.bob.state / "probe.txt")]
    assert (layout.bob.state / "probe.txt").stat().st_uid == uid
    assert result["read_db"][0] == "error"  # type: ignore[index]
    assert result["connect_own"] == ["ok", "pong"]
    # alice's socket is in the bound dir too, but not bob's uid's to connect to.
    assert result["connect_other"] == ["error", errno.EACCES]
    assert result["interfaces"] == ["lo"]


def test_a_stopped_container_fails_the_turn_with_advice(layout: HiveLayout, tmp_path: Path) -> None:
    sandbox = NspawnSandbox(leader_command=("cat", str(tmp_path / "{machine}.leader")))
    spec = sandbox.wrap(ProcessSpec(("true",)), agent("bob"), layout.bob)
    out = run(spec)
    assert out.returncode == 125
    assert "container h-bob is not running; start it: systemctl start container@h-bob" in out.stderr
