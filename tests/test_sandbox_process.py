"""The process sandbox: a plain subprocess in the agent's work dir, and no isolation at all.

These tests pin down what "no isolation" means, so nobody mistakes it for a boundary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hive.process import ProcessSpec
from hive.sandboxes import ProcessSandbox, get_sandbox
from tests.sandbox_env import (
    ALICE_SECRET,
    DB_SECRET,
    HiveLayout,
    agent,
    make_layout,
    probe_result,
    run,
)


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


def test_turn_runs_in_the_work_dir_with_the_given_env_and_stdin(layout: HiveLayout) -> None:
    sandbox = get_sandbox("process")
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    code = "import os, sys; print(os.getcwd(), os.environ['HIVE_AGENT'], sys.stdin.read())"
    spec = ProcessSpec(("/usr/bin/python3", "-c", code), env={"HIVE_AGENT": "bob"})
    wrapped = sandbox.wrap(spec, bob, layout.bob)
    assert wrapped.argv == spec.argv
    out = run(wrapped, stdin=b"hi")
    assert out.stdout.split() == [str(layout.bob.work), "bob", "hi"]


def test_an_explicit_cwd_is_kept(layout: HiveLayout) -> None:
    spec = ProcessSpec(("pwd",), cwd=layout.bob.state)
    assert ProcessSandbox().wrap(spec, agent("bob"), layout.bob).cwd == layout.bob.state


def test_prepare_creates_the_agent_dirs(layout: HiveLayout) -> None:
    paths = layout.bob.__class__.for_agent("carol", layout.state, layout.run)
    ProcessSandbox().prepare(agent("carol"), paths)
    assert paths.state.is_dir() and paths.work.is_dir() and paths.config.is_dir()


def test_the_process_sandbox_isolates_nothing(layout: HiveLayout) -> None:
    sandbox = ProcessSandbox()
    bob = agent("bob", network=False)  # not enforced by this backend
    sandbox.prepare(bob, layout.bob)
    spec = sandbox.wrap(
        ProcessSpec(layout.probe_args(layout.bob, layout.alice, write_outside=False)),
        bob,
        layout.bob,
    )
    result = probe_result(run(spec))
    assert result["uid"] == os.getuid()
    assert result["read_other_notes"] == ["ok", ALICE_SECRET]
    assert result["read_db"] == ["ok", DB_SECRET]
    assert result["connect_other"] == ["ok", "pong"]
    assert result["interfaces"] != ["lo"]
    assert (layout.alice.state / "evil.txt").exists()
