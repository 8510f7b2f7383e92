"""An agent's ``packages`` are on PATH in every sandbox, or refused where they cannot be.

Each backend's ``wrap`` is what every process of an agent goes through (turns, sessions,
one-shot questions, logins, the operator's terminal), so each is run here for real: the
process sandbox, bwrap, and nspawn's generated command against the stand-in container of
tests/test_sandbox_nspawn.py. The package is a real Nix store path (``nix-store --add``),
which is what the NixOS module puts in hive.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive.config import ConfigError, HiveConfig
from hive.process import ProcessSpec
from hive.sandboxes import BwrapSandbox, NspawnSandbox, ProcessSandbox, SandboxError
from hive.sandboxes.uids import preferred_slot, slot_uid
from tests.sandbox_env import HiveLayout, agent, make_layout, run
from tests.test_sandbox_nspawn import StandInContainer, write_conf

# What a turn runs, on a PATH that does not have the package.
SAY_HELLO = ProcessSpec(
    ("/bin/sh", "-c", "command -v hive-hello && hive-hello"), env={"PATH": "/usr/bin:/bin"}
)


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


def make_package(where: Path, name: str) -> Path:
    (where / name / "bin").mkdir(parents=True)
    tool = where / name / "bin" / "hive-hello"
    tool.write_text("#!/bin/sh\necho hello from the package\n")
    tool.chmod(0o755)
    return where / name


@pytest.fixture(scope="module")
def store_package(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A package in the real Nix store, as `nix-store --add` (or a build) puts it there."""
    src = make_package(tmp_path_factory.mktemp("pkg"), "hive-hello-tool")
    added = subprocess.run(
        ["nix-store", "--add", str(src)], capture_output=True, text=True, timeout=60, check=False
    )
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def says_hello(out: subprocess.CompletedProcess[str], package: str) -> None:
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{package}/bin/hive-hello", "hello from the package"]


def test_the_process_sandbox_puts_packages_on_path(layout: HiveLayout, store_package: str) -> None:
    bob = agent("bob", packages=[store_package])
    wrapped = ProcessSandbox().wrap(SAY_HELLO, bob, layout.bob)
    says_hello(run(wrapped), store_package)


def test_bwrap_puts_packages_on_the_agents_path_only(
    layout: HiveLayout, store_package: str
) -> None:
    sandbox = BwrapSandbox()
    bob = agent("bob", sandbox="bwrap", packages=[store_package])
    sandbox.prepare(bob, layout.bob)
    wrapped = sandbox.wrap(SAY_HELLO, bob, layout.bob)
    # Root's wrappers (prlimit, setpriv) keep the supervisor's PATH.
    assert wrapped.env["PATH"] == "/usr/bin:/bin"
    says_hello(run(wrapped), store_package)


def test_bwrap_refuses_a_package_it_hides_rather_than_binding_it_in(layout: HiveLayout) -> None:
    """A package path comes from the agent's config: binding a hidden one back would let a
    config choose what of the host (another agent's dir, a home) the agent sees."""
    hidden = Path(tempfile.mkdtemp(prefix="hive-pkg-", dir="/tmp"))
    try:
        local = make_package(hidden, "local-tool")
        sandbox = BwrapSandbox()
        for package, where in [
            (local, "/tmp"), (layout.alice.root, str(layout.state)), (Path("/root/x"), "/root"),
        ]:  # fmt: skip
            bob = agent("bob", sandbox="bwrap", packages=[str(package)])
            with pytest.raises(SandboxError) as refused:
                sandbox.wrap(SAY_HELLO, bob, layout.bob)
            assert str(refused.value) == (
                f"agent 'bob': package {package} is under {where}, which the bwrap sandbox "
                "hides; install it elsewhere (e.g. /opt or the Nix store)"
            )
    finally:
        shutil.rmtree(hidden)


def test_nspawn_puts_store_packages_on_path_inside_the_container(
    layout: HiveLayout, store_package: str, tmp_path: Path
) -> None:
    uid = slot_uid(preferred_slot("bob"))
    write_conf(tmp_path, "h-bob", str(uid))
    sandbox = NspawnSandbox(
        conf_dir=tmp_path, leader_command=("cat", str(tmp_path / "{machine}.leader"))
    )
    bob = agent("bob", sandbox="nspawn", packages=[store_package])
    sandbox.prepare(bob, layout.bob)
    container = StandInContainer(layout, uid, tmp_path / "h-bob.leader")
    try:
        wrapped = sandbox.wrap(SAY_HELLO, bob, layout.bob)
        assert wrapped.env["PATH"] == "/usr/bin:/bin"  # host root's sh and nsenter
        says_hello(run(wrapped), store_package)
    finally:
        container.stop()


@pytest.mark.parametrize(
    ("agent_toml", "message"),
    [
        (
            'sandbox = "nspawn"\npackages = ["/opt/tools"]',
            "agent 'bob': packages /opt/tools are not in /nix/store/, and the nspawn sandbox's "
            "container sees no other host files: use Nix packages",
        ),
        (
            'packages = ["tools"]',
            "agent 'bob': 'packages[0]' must be an absolute directory without ':', got 'tools'",
        ),
        (
            'sandbox = "bwrap"\npackages = ["/opt/a:/opt/b"]',
            "agent 'bob': 'packages[0]' must be an absolute directory without ':'",
        ),
    ],
    ids=["nspawn-outside-the-store", "relative", "path-separator"],
)
def test_packages_a_sandbox_cannot_honour_are_refused(agent_toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        HiveConfig.from_toml_text(f'[[agent]]\nname = "bob"\n{agent_toml}\n')
    assert message in str(refused.value)


def test_every_sandbox_accepts_store_packages_and_bwrap_and_process_any_directory() -> None:
    store, local = "/nix/store/abc-git", "/opt/tools"
    for sandbox, packages in [
        ("nspawn", [store]), ("bwrap", [store, local]), ("process", [store, local]),
        ("auto", [store, local]),
    ]:  # fmt: skip
        cfg = HiveConfig.from_toml_text(
            f'[[agent]]\nname = "bob"\nsandbox = "{sandbox}"\npackages = {packages!r}\n'.replace(
                "'", '"'
            )
        )
        assert cfg.agents[0].packages == tuple(packages)
