"""The boundary docs/security.md draws: the hive-admin group and the dashboard are the
operator (the fleet), not root (the host). A caller who is not root may not put an agent in
a sandbox that runs it as the supervisor's user ("process": root here), by spawn or by
approving a spawn, and the dashboard's terminal does not open in such an agent. Root
(uid 0 on the admin socket) may; hive.toml may allow it with ``operator_sandboxes``.

The non-root caller is a real process with uid ``nobody`` and group ``nogroup`` (the
hive's ``admin_group``), talking to the real admin socket; the kernel tells the daemon its
uid (SO_PEERCRED)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hive.config import ConfigError, HiveConfig
from hive.wire import PROTOCOL_VERSION, FrameDecoder, encode_frame
from tests.control_support import as_agent, git, wait_pending
from tests.hive_harness import RunningHive
from tests.ui_harness import DashboardHive, make_dashboard

__all__ = ["make_dashboard"]  # the fixture, imported for pytest

NOBODY = 65534  # uid nobody, gid nogroup on Debian
DEBIAN_PYTHON = "/usr/bin/python3"  # reachable by nobody (the venv's is under /root)

CONFIG = """
[hive]
admin_group = "nogroup"
{extra}

[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""

# One request frame in, one reply frame out, as uid nobody: the child only moves bytes.
CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
data = b""
while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.hex())
"""


def as_nobody(hive: RunningHive, op: str, **args: Any) -> dict[str, Any]:
    """The admin verb ``op`` from a process whose uid is nobody's: the reply frame."""
    frame = encode_frame({"v": PROTOCOL_VERSION, "id": 1, "op": op, "args": args})
    done = subprocess.run(
        [DEBIAN_PYTHON, "-c", CLIENT, str(hive.admin_path), frame.hex()],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    decoder = FrameDecoder()
    replies = decoder.feed(bytes.fromhex(done.stdout.strip()))
    assert len(replies) == 1, replies
    reply: dict[str, Any] = replies[0]
    return reply


def error_of(reply: dict[str, Any]) -> tuple[str, str]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["message"]


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A directory nobody can traverse to its socket (pytest's tmp dirs are 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="hive-privilege-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start(open_root: Path) -> Iterator[Callable[[str], RunningHive]]:
    started: list[RunningHive] = []

    def run(extra: str = "") -> RunningHive:
        hive = RunningHive.start(open_root / f"hive{len(started)}", CONFIG.format(extra=extra))
        started.append(hive)
        # What a deployment's /run/hive and state dir give others: the traverse bit only.
        for d in (hive.root, hive.state_dir, hive.admin_path.parent):
            os.chmod(d, 0o711)
        return hive

    yield run
    for hive in started:
        if hive.process.poll() is None:
            hive.terminate()


def agent_names(hive: RunningHive) -> list[str]:
    return [row["name"] for row in hive.admin("list")["agents"]]


def test_the_admin_group_may_not_spawn_an_agent_that_runs_as_root(
    start: Callable[[str], RunningHive],
) -> None:
    hive = start("")
    assert as_nobody(hive, "version")["ok"] is True  # the group may use the socket
    for args in ({}, {"sandbox": "process"}, {"config": {"sandbox": "process"}}):
        code, message = error_of(as_nobody(hive, "spawn", name="rooted", **args))
        assert code == "needs_root"
        assert "spawn of 'rooted' refused" in message
        assert "'process'" in message and "root" in message
        assert "operator_sandboxes" in message and "bwrap, nspawn" in message
    assert "rooted" not in agent_names(hive)
    # A sandbox that runs the agent as its own uid is the group's to choose.
    reply = as_nobody(hive, "spawn", name="boxed", sandbox="bwrap")
    assert reply["ok"] is True, reply
    assert "boxed" in agent_names(hive)
    # Root keeps every power (hive.toml is root's anyway).
    assert hive.admin("spawn", name="rooted")["config"]["sandbox"] == "process"


def test_approving_a_spawn_into_the_process_sandbox_needs_root(
    start: Callable[[str], RunningHive],
) -> None:
    hive = start("")
    # The manager runs in the process sandbox, so its new agent inherits it.
    request = as_agent(hive, "manager", "request_spawn", name="scout")
    wait_pending(hive, 1)
    code, message = error_of(as_nobody(hive, "approve", id=request["id"]))
    assert code == "needs_root"
    assert f"approving spawn #{request['id']} refused" in message
    assert "agent 'scout' is in sandbox 'process'" in message
    # Nothing happened: still pending, no agent; denying is not an escalation.
    assert [p["id"] for p in hive.admin("pending")["pending"]] == [request["id"]]
    assert "scout" not in agent_names(hive)
    # An id that is not (yet) stored is not found, for anyone.
    assert error_of(as_nobody(hive, "approve", id=request["id"] + 100))[0] == "not_found"
    assert hive.admin("approve", id=request["id"])["status"] == "approved"
    hive.wait_until(lambda: "scout" in agent_names(hive), what="scout to be spawned")


def test_approving_a_config_change_of_an_agent_that_runs_as_root_needs_root(
    start: Callable[[str], RunningHive],
) -> None:
    hive = start("")
    hive.admin("spawn", name="scout")  # root's choice: the process sandbox
    repo = hive.state_dir / "agents" / "scout" / "config"
    (repo / "agent.toml").write_text('name = "scout"\nmodel = "changed"\n')
    git(repo, "commit", "-qam", "a new model, still the process sandbox")
    request = as_agent(hive, "manager", "request_apply_commit", agent="scout", ref="HEAD")
    hive.wait_until(lambda: hive.status("scout")["needs_update"], what="needs_update")
    code, message = error_of(as_nobody(hive, "approve", id=request["id"]))
    assert code == "needs_root"
    assert f"approving apply_commit #{request['id']} refused" in message
    assert hive.status("scout")["active_model"] != "changed"
    # Denying gives nobody anything: the group may.
    assert as_nobody(hive, "deny", id=request["id"])["ok"] is True
    hive.wait_until(lambda: not hive.status("scout")["needs_update"], what="needs_update gone")


def test_hive_toml_may_give_the_operator_the_process_sandbox(
    start: Callable[[str], RunningHive],
) -> None:
    hive = start('operator_sandboxes = ["process", "bwrap"]')
    reply = as_nobody(hive, "spawn", name="trusted")
    assert reply["ok"] is True, reply
    assert reply["result"]["config"]["sandbox"] == "process"


def test_operator_sandboxes_names_real_sandboxes() -> None:
    with pytest.raises(ConfigError, match=r"operator_sandboxes.*must be one of"):
        HiveConfig.from_toml_text('[hive]\noperator_sandboxes = ["docker"]\n')
    assert HiveConfig().operator_sandboxes == ("bwrap", "nspawn")


DASH_CONFIG = """
[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""

OPEN_TERMINAL = """async ([csrf]) => {
    const ws = new WebSocket(`ws://${location.host}/api/agents/bob/terminal?csrf=${csrf}`);
    ws.binaryType = 'arraybuffer';
    let out = '';
    ws.onmessage = (ev) => {
      out += typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
    };
    const closed = await new Promise((ok) => { ws.onclose = (ev) => ok(ev); });
    return {out, code: closed.code, reason: closed.reason};
}"""


def test_the_dashboard_is_the_operator_no_root_spawn_and_no_root_terminal(
    make_dashboard: Callable[..., DashboardHive],
) -> None:
    dash = make_dashboard(DASH_CONFIG)
    request = as_agent(dash.hive, "manager", "request_spawn", name="scout")
    wait_pending(dash.hive, 1)
    r = dash.api("POST", f"/api/approvals/{request['id']}/approve")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "needs_root"
    assert "agent 'scout' is in sandbox 'process'" in r.json()["error"]["message"]
    assert [p["id"] for p in dash.hive.admin("pending")["pending"]] == [request["id"]]
    with dash.browser() as page:
        page.goto(f"{dash.url}/agents/bob")
        closed = page.evaluate(OPEN_TERMINAL, [dash.csrf])
    assert closed["code"] == 1008 and closed["reason"] == "needs_root", closed
    assert "cannot open a terminal for bob: needs_root" in closed["out"]
    assert "supervisor's own user" in closed["out"]
