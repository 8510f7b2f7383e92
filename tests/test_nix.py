"""nix/: every file parses, and the module's output is what hive expects.

There is no nixpkgs here, so the module is evaluated by tests/nix/eval-module.nix, which
stands in for the few lib functions it uses. The rendered hive.toml is then read by hive's
own config loader, so the Nix side and the Python side cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hive.config import HiveConfig
from hive.sandboxes import uids

REPO = Path(__file__).resolve().parent.parent
EVAL_MODULE = REPO / "tests" / "nix" / "eval-module.nix"
NIX_FILES = sorted([*REPO.glob("nix/**/*.nix"), *REPO.glob("tests/nix/*.nix")])


def nix_eval(expr: str) -> Any:
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def nix_string(value: object) -> str:
    """A Python value as a Nix expression (JSON is close enough for what tests pass)."""
    if isinstance(value, dict):
        inner = " ".join(f"{json.dumps(k)} = {nix_string(v)};" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[ " + " ".join(nix_string(v) for v in value) + " ]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith("<nix>"):
        return value.removeprefix("<nix>")  # a raw Nix expression
    if isinstance(value, str):
        return nix_quote(value)
    return json.dumps(value)


def nix_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def evaluate(hive: dict[str, object]) -> dict[str, Any]:
    hive = {"enable": True, "claudePackage": None, **hive}
    result: dict[str, Any] = nix_eval(f"import {EVAL_MODULE} {{ hive = {nix_string(hive)}; }}")
    return result


def fake_package(name: str) -> str:
    path = f"/nix/store/11111111111111111111111111111111-{name}"
    return f'<nix>{{ name = "{name}"; outPath = "{path}"; }}'


def test_nix_files_exist() -> None:
    names = {p.name for p in NIX_FILES}
    assert {"flake.nix", "default.nix", "module.nix", "package.nix", "lib.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_nix_file_parses(path: Path) -> None:
    out = subprocess.run(
        ["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr


def test_nix_and_python_give_every_agent_the_same_uid() -> None:
    names = ["manager", "bob", "alice", "a", "worker-7", "x" * 32]
    expr = (
        "let l = import ./nix/lib.nix; in { "
        "base = l.uidBase; block = l.uidBlock; slots = l.uidSlots; "
        f"uids = map (l.agentUid l.uidBase) {nix_string(names)}; "
        "}"
    )
    got = nix_eval(expr)
    assert (got["base"], got["block"], got["slots"]) == (uids.UID_BASE, uids.BLOCK, uids.SLOTS)
    assert got["uids"] == [uids.slot_uid(uids.preferred_slot(n)) for n in names]


def test_the_module_renders_a_hive_toml_that_hive_loads() -> None:
    out = evaluate(
        {
            "claudePackage": fake_package("claude-code"),
            "settings": {"restart_intensity": 3},
            "agents": {
                "manager": {"model": "claude-opus-4"},
                "bob": {
                    "parent": "manager",
                    "allowedRecipients": ["manager"],
                    "allowedTools": ["Read", "Edit"],
                    "bashAllow": ["git *", "nix build *"],
                    "network": False,
                    "packages": [fake_package("git")],
                    "mcpServers": {
                        "tools": {"command": "/bin/tools", "args": ["--x"], "allowedTools": ["a"]}
                    },
                    "prompt": 'Say "hi".\nThen \\ stop. ünïcode, ${HOME} $x',
                    "env": {"LANG": "C.UTF-8"},
                },
                "worker": {"sandbox": "bwrap", "runtime": "scripted"},
            },
        }
    )
    cfg = HiveConfig.from_toml_text(out["toml"])
    assert cfg.admin_group == "hive-admin"
    assert cfg.restart_intensity == 3
    assert (str(cfg.state_dir), str(cfg.run_dir)) == ("/var/lib/hive", "/run/hive")
    assert cfg.claude_bin.endswith("-claude-code/bin/claude")
    assert (cfg.dashboard_host, cfg.dashboard_port) == ("127.0.0.1", 8417)
    bob = cfg.agent("bob")
    assert bob is not None
    assert bob.parent == "manager"
    assert bob.allowed_recipients == ("manager",)
    assert bob.allowed_tools == ("Read", "Edit")
    assert bob.bash_allow == ("git *", "nix build *")
    assert bob.network is False
    assert bob.sandbox == "nspawn"
    assert bob.packages == ("/nix/store/11111111111111111111111111111111-git",)
    assert bob.prompt == 'Say "hi".\nThen \\ stop. ünïcode, ${HOME} $x'
    assert bob.env == {"LANG": "C.UTF-8"}
    (server,) = bob.mcp_servers
    assert (server.name, server.command, server.args, server.allowed_tools) == (
        "tools", "/bin/tools", ("--x",), ("a",),
    )  # fmt: skip
    manager = cfg.agent("manager")
    assert manager is not None and manager.allowed_recipients is None
    assert manager.model == "claude-opus-4"
    worker = cfg.agent("worker")
    assert worker is not None and (worker.sandbox, worker.runtime) == ("bwrap", "scripted")


def test_the_supervisor_unit_is_a_watched_notify_service() -> None:
    out = evaluate({"agents": {"manager": {}}})
    unit = out["service"]
    sc = unit["serviceConfig"]
    assert (sc["Type"], sc["NotifyAccess"], sc["WatchdogSec"]) == ("notify", "main", 30)
    assert (sc["Restart"], unit["startLimitBurst"], unit["startLimitIntervalSec"]) == (
        "on-failure", 5, 300,
    )  # fmt: skip
    assert (sc["StateDirectory"], sc["RuntimeDirectory"]) == ("hive", "hive")
    assert sc["RuntimeDirectoryPreserve"] == "yes"
    assert sc["EnvironmentFile"] == "-/etc/hive/env"
    assert re.fullmatch(
        r"/nix/store/\S+-hive/bin/hive-supervisor --config /etc/hive/hive.toml "
        r"--state-dir /var/lib/hive --run-dir /run/hive",
        sc["ExecStart"],
    )
    assert any(p.endswith("-bubblewrap") for p in unit["path"])
    assert out["groups"] == ["hive-admin"]
    assert out["failedAssertions"] == []


def test_each_nspawn_agent_gets_an_unprivileged_container() -> None:
    out = evaluate(
        {"agents": {"manager": {}, "bob": {"network": False}, "w": {"sandbox": "bwrap"}}}
    )
    assert sorted(out["containers"]) == ["h-bob", "h-manager"]
    bob = out["containers"]["h-bob"]
    uid = uids.slot_uid(uids.preferred_slot("bob"))
    assert bob["privateUsers"] == uid
    assert bob["privateNetwork"] is True
    assert out["containers"]["h-manager"]["privateNetwork"] is False
    assert bob["bindMounts"] == {
        "/var/lib/hive/agents/bob": {"hostPath": "/var/lib/hive/agents/bob", "isReadOnly": False},
        "/run/hive/agents": {"hostPath": "/run/hive/agents", "isReadOnly": True},
    }
    assert f"d /var/lib/hive/agents/bob 0700 {uid} {uid} -" in out["tmpfiles"]
    # claude-code is allowed inside, by a predicate that admits nothing else.
    assert (bob["claudeAllowed"], bob["otherUnfreeAllowed"]) == (True, False)
    assert "claude-code" in bob["packages"] and "hive" in bob["packages"]


def test_module_assertions_explain_what_to_change() -> None:
    names = {}
    for i in range(10 * uids.SLOTS):  # two short names with the same preferred uid
        name = f"n{i}"
        names.setdefault(uids.preferred_slot(name), []).append(name)
        if len(names[uids.preferred_slot(name)]) == 2:
            pair = names[uids.preferred_slot(name)]
            break
    out = evaluate(
        {
            "agents": {
                "averylongname": {},
                pair[0]: {},
                pair[1]: {},
                "orphan": {"parent": "nobody"},
                "fine": {"sandbox": "bwrap", "uid": 0},
            }
        }
    )
    messages = "\n".join(out["failedAssertions"])
    assert "h-averylongname is longer than nixos-container's 11 characters" in messages
    assert 'set sandbox = "bwrap" for this agent' in messages
    assert f"{', '.join(sorted(pair))} get the same uid block; set `uid` on one of them" in messages
    assert "parent 'nobody' is not a declared agent" in messages
    assert len(out["failedAssertions"]) == 3


def test_a_disabled_module_configures_nothing() -> None:
    out = evaluate({"enable": False, "agents": {"bob": {}}})
    assert out["enabled"] is False and out["containers"] == {} and out["toml"] is None


def test_the_package_depends_on_what_pyproject_lists() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = sorted(
        re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]
    )
    stub = " ".join(f'"{d}" = "{d}";' for d in [*deps, "setuptools", "wheel"])
    expr = (
        f"let p = import ./nix/package.nix {{"
        f"  lib = {{ cleanSource = s: toString s; platforms.linux = [ ]; }};"
        f"  python3Packages = {{ {stub} buildPythonApplication = a: a; }};"
        f"}}; in {{ inherit (p) pname dependencies; src = p.src; }}"
    )
    got = nix_eval(expr)
    assert got["pname"] == "hive"
    assert sorted(got["dependencies"]) == deps
    assert got["src"] == str(REPO)
