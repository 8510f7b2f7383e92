"""The test systemd itself (tests/systemd_boot.py): it refuses to boot without its
protections, boots with them, keeps the host's /tmp and /etc untouched, and is gone after."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import systemd_boot
from tests.systemd_boot import (
    MUST_MASK,
    OVERLAY_PATHS,
    REFUSED_EXIT,
    SHARE_IN_NS,
    TMPFS_PATHS,
    UNIT_DIR,
    BootedSystemd,
    boot_systemd,
    guard,
)


@pytest.fixture(scope="module")
def systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystemd]:
    with boot_systemd(tmp_path_factory.mktemp("systemd")) as sd:
        yield sd


def test_the_guard_refuses_the_hosts_namespace() -> None:
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    ns = os.readlink("/proc/self/ns/mnt")
    problems = guard(mountinfo, UNIT_DIR, os.getpid(), ns, ns)
    assert "still in the host's mount namespace" in problems
    assert any(p.startswith("not PID 1") for p in problems)
    # The host's /tmp is no private tmpfs, and nothing is masked here.
    assert "/tmp is not a private tmpfs (found None)" in problems
    assert sum("is not masked" in p for p in problems) == len(MUST_MASK)


def test_the_namespace_program_refuses_before_mounting_anything(tmp_path: Path) -> None:
    # Not PID 1 (no new PID namespace): refused before any mount. Run in a private mount
    # namespace all the same, so that a regression could not cover the host's /run.
    script = (
        f"{sys.executable} {systemd_boot.__file__} {tmp_path} {os.readlink('/proc/self/ns/mnt')}"
        f"; echo exit=$?; grep -c ' {SHARE_IN_NS} ' /proc/self/mountinfo || true"
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == [f"exit={REFUSED_EXIT}", "0"], out
    assert "systemd_boot: refusing to boot systemd: not PID 1" in out.stderr


def test_the_guard_accepts_only_the_full_set_of_mounts() -> None:
    lines = [
        f"{i} 1 0:{i} / {path} rw - {kind} {kind} rw"
        for i, (path, kind) in enumerate(
            [(p, "tmpfs") for p in TMPFS_PATHS] + [(p, "overlay") for p in OVERLAY_PATHS]
        )
    ]
    # /tmp covered again by the host's disk: no longer a tmpfs on top.
    covered = "\n".join([*lines, "99 1 8:1 / /tmp rw - ext4 /dev/vda rw"])
    problems = guard(covered, "/x", 1, "a", "b")
    assert "/tmp is not a private tmpfs (found ext4)" in problems
    assert not any("/run is" in p or "/etc is" in p for p in problems)


def test_it_boots_with_a_journal_and_private_etc_tmp(systemd: BootedSystemd) -> None:
    assert systemd.run("systemctl", "is-system-running").stdout.strip() == "running"
    # What the namespace writes to /tmp and /etc stays there.
    systemd.run("touch", "/tmp/inside-only", "/etc/inside-only")
    assert systemd.path("/tmp/inside-only").exists()
    assert not Path("/tmp/inside-only").exists() and not Path("/etc/inside-only").exists()
    for name in MUST_MASK:
        assert systemd.show(name, "LoadState")["LoadState"] == "masked"
    systemd.run("systemd-cat", "-t", "hive-boot-test", "echo", "hello journal")
    assert "hello journal" in systemd.journal("-t", "hive-boot-test")
    # The share dir is the same directory on both sides.
    (systemd.share / "from-host").write_text("x")
    assert systemd.run("cat", "/run/hive-test-host/from-host").stdout == "x"


def test_a_user_added_inside_is_not_on_the_host(systemd: BootedSystemd) -> None:
    systemd.add_user("hive-boot-probe")
    assert "hive-boot-probe" in systemd.run("getent", "passwd", "hive-boot-probe").stdout
    with open("/etc/passwd") as f:
        assert "hive-boot-probe" not in f.read()
