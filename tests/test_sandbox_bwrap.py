"""The bwrap sandbox, run for real: what an agent inside can and cannot do."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hive.process import ProcessSpec
from hive.sandboxes import BwrapSandbox, Limits, SandboxError, get_sandbox
from hive.sandboxes.uids import SLOTS, UID_BASE, preferred_slot, uid_slot
from tests.hive_harness import trio_idle_timeout
from tests.sandbox_env import (
    ALICE_SECRET,
    SANDBOX_PYTHON,
    HiveLayout,
    agent,
    make_layout,
    probe_result,
    run,
)

EROFS, ENOENT, EACCES = errno.EROFS, errno.ENOENT, errno.EACCES


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


@pytest.fixture
def sandbox() -> BwrapSandbox:
    return BwrapSandbox(limits=Limits(nofile=777, nproc=333))


def probe(sandbox: BwrapSandbox, layout: HiveLayout, **agent_kw: object) -> dict[str, object]:
    bob = agent("bob", **agent_kw)
    sandbox.prepare(bob, layout.bob)
    sandbox.prepare(agent("alice"), layout.alice)
    spec = sandbox.wrap(ProcessSpec(layout.probe_args(layout.bob, layout.alice)), bob, layout.bob)
    return probe_result(run(spec))


def test_agent_is_root_inside_and_its_own_unprivileged_uid_outside(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    uid = sandbox.agent_uid(layout.bob)
    assert uid_slot(uid) is not None and uid >= UID_BASE
    spec = sandbox.wrap(ProcessSpec(layout.probe_args(layout.bob, layout.alice)), bob, layout.bob)
    proc = subprocess.Popen(
        spec.argv, cwd=spec.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        # The probe is waiting on stdin: look at it from the host.
        inner = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if p.name().startswith("python")
        ]
        assert len(inner) == 1
        status = Path(f"/proc/{inner[0].pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(uid)] * 4
        proc.stdin.write("\n")
        proc.stdin.flush()
        out = proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    result = probe_result(subprocess.CompletedProcess(spec.argv, 0, "ready\n" + out, ""))
    assert result["uid"] == 0 and result["gid"] == 0
    assert result["uid_map"] == ["0", str(uid), "1"]
    assert result["cwd"] == str(layout.bob.work)
    assert result["home"] == str(layout.bob.state)


def test_agent_has_no_capabilities_and_no_new_privileges(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    spec = sandbox.wrap(ProcessSpec(("cat", "/proc/self/status")), bob, layout.bob)
    status = dict(line.split(":\t", 1) for line in run(spec).stdout.splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == status["CapPrm"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"


def test_agent_cannot_see_other_agents_or_the_db(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    result = probe(sandbox, layout)
    assert result["read_other_notes"] == ["error", ENOENT]
    assert result["list_other"] == ["error", ENOENT]
    assert result["read_db"] == ["error", ENOENT]
    # The whole state dir is an empty mask: only the path down to bob's own dir.
    assert result["list_hive_state"] == ["ok", ["agents"]]
    assert ALICE_SECRET not in str(result)


def test_agent_writes_only_its_own_dir_and_private_tmp(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    result = probe(sandbox, layout)
    own = layout.bob.state / "probe.txt"
    assert result["write_own"] == ["ok", str(own)]
    assert own.read_text() == "x"
    assert own.stat().st_uid == sandbox.agent_uid(layout.bob)
    assert result["write_other"] == ["error", ENOENT]
    assert result["write_hive_state"] == ["error", EROFS]
    assert result["write_etc"] == ["error", EROFS]
    assert result["write_usr"] == ["error", EROFS]
    assert result["write_tmp"] == ["ok", "/tmp/hive-probe.txt"]
    assert not Path("/tmp/hive-probe.txt").exists()
    assert not (layout.alice.state / "evil.txt").exists()
    assert not (layout.state / "evil.txt").exists()


def test_agent_reaches_its_own_socket_and_no_other(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    result = probe(sandbox, layout)
    assert result["connect_own"] == ["ok", "pong"]
    assert result["connect_other"] == ["error", ENOENT]
    bob_socket, alice_socket = layout.sockets
    assert (bob_socket.connections, alice_socket.connections) == (1, 0)
    st = layout.bob.socket.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (sandbox.agent_uid(layout.bob), 0o600)


def test_network_off_leaves_only_loopback(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    assert probe(sandbox, layout, network=False)["interfaces"] == ["lo"]


def test_network_on_shares_the_host_interfaces(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    import socket

    host = sorted(name for _, name in socket.if_nameindex())
    assert probe(sandbox, layout, network=True)["interfaces"] == host


def test_resource_limits_apply_inside(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    result = probe(sandbox, layout)
    assert result["nofile"] == [777, 777]
    assert result["nproc"] == [333, 333]


def test_killing_the_turn_process_group_ends_the_whole_sandbox(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    code = "import time; print('up', flush=True); time.sleep(600)"
    spec = sandbox.wrap(ProcessSpec((SANDBOX_PYTHON, "-c", code)), bob, layout.bob)
    proc = subprocess.Popen(spec.argv, cwd=spec.cwd, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert any(p.name().startswith("python") for p in tree)
    # A pidfd turns readable when its process exits, whoever reaps it later.
    pidfds = [os.pidfd_open(p.pid) for p in tree]
    os.killpg(proc.pid, signal.SIGKILL)  # what cancelling a turn does
    proc.wait(timeout=30)
    for fd in pidfds:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(30_000), "a sandboxed process outlived its cancelled turn"
        os.close(fd)


def test_a_group_sigterm_reaches_the_agent_for_a_graceful_stop(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    # The agent takes its time to stop (a CLI saving its session): the group SIGTERM also
    # reaches bwrap, which must not end the sandbox under it (--die-with-parent would).
    code = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(0.5)\n"
        "    print('stopping', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('up', flush=True)\n"
        "signal.pause()\n"
    )
    spec = sandbox.wrap(ProcessSpec((SANDBOX_PYTHON, "-c", code)), bob, layout.bob)
    proc = subprocess.Popen(spec.argv, cwd=spec.cwd, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.stdout.readline() == b"stopping\n"
    assert proc.wait(timeout=30) == 0  # the agent's own exit status, not a signal's


def test_uid_is_stable_and_distinct_per_agent(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    sandbox.prepare(agent("bob"), layout.bob)
    sandbox.prepare(agent("alice"), layout.alice)
    bob_uid = sandbox.agent_uid(layout.bob)
    sandbox.prepare(agent("bob"), layout.bob)
    assert sandbox.agent_uid(layout.bob) == bob_uid
    assert sandbox.agent_uid(layout.alice) != bob_uid


def test_names_with_the_same_preferred_slot_get_different_uids(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    from hive.process import AgentPaths

    seen: dict[int, str] = {}
    pair: tuple[str, str] | None = None
    for i in range(10 * SLOTS):
        name = f"a{i}"
        slot = preferred_slot(name)
        if slot in seen:
            pair = (seen[slot], name)
            break
        seen[slot] = name
    assert pair is not None
    uids = []
    for name in pair:
        paths = AgentPaths.for_agent(name, layout.state, layout.run)
        sandbox.prepare(agent(name), paths)
        uids.append(sandbox.agent_uid(paths))
    assert uids[0] != uids[1]
    assert uid_slot(uids[0]) == preferred_slot(pair[0])
    assert uid_slot(uids[1]) == (preferred_slot(pair[1]) + 1) % SLOTS


def test_prepare_keeps_the_db_private_while_opening_the_path(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    sandbox.prepare(agent("bob"), layout.bob)
    assert layout.db.stat().st_mode & 0o777 == 0o600
    assert layout.state.stat().st_mode & 0o001
    assert (layout.bob.root.stat().st_mode & 0o777) == 0o700


def test_prepare_refuses_a_symlinked_agent_dir(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    layout.bob.work.rmdir()
    layout.bob.work.symlink_to("/etc")
    with pytest.raises(SandboxError, match="symlink"):
        sandbox.prepare(agent("bob"), layout.bob)


def test_prepare_chowns_files_the_supervisor_left_in_the_agent_dir(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    model = layout.bob.state / "hive-model"
    model.write_text("claude-opus-4")
    link = layout.bob.state / "shadow"
    link.symlink_to("/etc/shadow")
    sandbox.prepare(agent("bob"), layout.bob)
    uid = sandbox.agent_uid(layout.bob)
    assert model.stat().st_uid == uid
    assert link.lstat().st_uid == uid
    assert Path("/etc/shadow").stat().st_uid == 0  # the link was not followed


def test_later_prepares_re_own_only_where_the_supervisor_writes(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    (layout.bob.work / "early.txt").write_text("before the first turn")
    sandbox.prepare(agent("bob"), layout.bob)  # the first walks the whole tree
    uid = sandbox.agent_uid(layout.bob)
    assert (layout.bob.work / "early.txt").stat().st_uid == uid
    for d in (layout.bob.state, layout.bob.config, layout.bob.work):
        (d / "late.txt").write_text("written by root between turns")
    sandbox.prepare(agent("bob"), layout.bob)
    assert (layout.bob.state / "late.txt").stat().st_uid == uid
    assert (layout.bob.config / "late.txt").stat().st_uid == uid
    # work/ is the agent's own: not walked on every turn.
    assert (layout.bob.work / "late.txt").stat().st_uid == 0


def test_home_is_the_agents_state_dir_unless_the_runtime_chose_one_inside(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    code = ("/bin/sh", "-c", "echo $HOME")
    for env, expected in (
        ({"HOME": "/root"}, layout.bob.state),
        ({"HOME": str(layout.bob.work)}, layout.bob.work),
    ):
        spec = sandbox.wrap(ProcessSpec(code, env=env), bob, layout.bob)
        assert run(spec).stdout.strip() == str(expected)


def test_missing_bwrap_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        BwrapSandbox()


def test_without_root_the_sandbox_maps_to_the_callers_uid(layout: HiveLayout) -> None:
    sandbox = BwrapSandbox(as_agent_uid=False)
    spec = sandbox.wrap(ProcessSpec(("true",)), agent("bob"), layout.bob)
    assert not any(a.endswith("setpriv") for a in spec.argv)
    assert sandbox.agent_uid(layout.bob) == os.geteuid()


def test_auto_picks_bwrap_here_and_unknown_names_are_refused() -> None:
    assert get_sandbox("auto").name == "bwrap"
    assert get_sandbox("bwrap").name == "bwrap"
    with pytest.raises(SandboxError, match="use one of auto, bwrap, nspawn, process"):
        get_sandbox("docker")


def test_a_scripted_python_turn_runs_with_stdin(sandbox: BwrapSandbox, layout: HiveLayout) -> None:
    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    code = "import sys; print(sys.stdin.read().upper())"
    spec = sandbox.wrap(ProcessSpec((SANDBOX_PYTHON, "-c", code)), bob, layout.bob)
    out = run(spec, stdin=b"hello from the supervisor")
    assert (out.returncode, out.stdout.strip()) == (0, "HELLO FROM THE SUPERVISOR")


async def test_a_one_shot_run_in_bwrap_outlives_trios_idle_worker_threads(
    sandbox: BwrapSandbox, layout: HiveLayout
) -> None:
    """Item 10 for notes compaction's one-shot run (hive.io.spawn.run_captured): forked from
    a trio worker thread, it died with that thread 10 s in, like every bwrap turn."""
    from hive.io.spawn import run_captured
    from hive.io.streams import signal_group

    bob = agent("bob")
    sandbox.prepare(bob, layout.bob)
    # The child itself outlasts trio's idle timeout: that time passing is the test.
    code = (
        "import sys, time; data = sys.stdin.read(); "
        f"time.sleep({trio_idle_timeout() + 3}); print(data.upper())"
    )
    spec = sandbox.wrap(ProcessSpec((SANDBOX_PYTHON, "-c", code)), bob, layout.bob)
    done = await run_captured(
        spec.argv,
        stdin=b"still here",
        env={**os.environ, **spec.env},
        cwd=str(spec.cwd),
        on_cancel=lambda process: signal_group(process, signal.SIGKILL),
    )
    assert (done.returncode, done.stdout.strip()) == (0, b"STILL HERE"), done.stderr
