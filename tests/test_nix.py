"""nix/: every file parses, and the NixOS module is right on the real module system.

nix/module.nix is evaluated by tests/nix/eval-module.nix with nixpkgs' own lib
(``lib.evalModules``, ``lib.types``), found through HIVE_NIXPKGS_LIB (a directory holding
nixpkgs' ``lib/``; .ci/run sets it). Only the NixOS options the module sets and ``pkgs`` are
stand-ins (tests/nix/nixos-options.nix, tests/nix/pkgs.nix), typed with the real
``lib.mkOption``. The rendered hive.toml is read by hive's own config loader and the unit is
compared with hive.systemd's, so the Nix side and the Python side cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hive.config import AgentConfig, HiveConfig
from hive.sandboxes import uids
from hive.systemd import UnitSettings, render_unit

REPO = Path(__file__).resolve().parent.parent
EVAL_MODULE = REPO / "tests" / "nix" / "eval-module.nix"
NIX_FILES = sorted([*REPO.glob("nix/**/*.nix"), *REPO.glob("tests/nix/**/*.nix")])
STORE = "/nix/store/00000000000000000000000000000000"  # tests/nix/pkgs.nix's fake paths


@pytest.fixture(scope="module")
def nixpkgs() -> str:
    """The directory holding nixpkgs' lib/: a missing one fails the test, never skips it."""
    where = os.environ.get("HIVE_NIXPKGS_LIB", "")
    if not where or not (Path(where) / "lib" / "default.nix").is_file():
        pytest.fail(
            f"HIVE_NIXPKGS_LIB={where!r} is not a directory holding nixpkgs' lib/ (lib/"
            "default.nix): point it at a nixpkgs checkout or the nixpkgs.lib mirror; .ci/run "
            "sets it"
        )
    return str(Path(where).resolve())


def nix_run(expr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def nix_eval(expr: str) -> Any:
    out = nix_run(expr)
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


def module_expr(nixpkgs: str, hive: dict[str, object]) -> str:
    args = f"nixpkgs = {nix_quote(nixpkgs)}; hive = {nix_string(hive)};"
    return f"(import {EVAL_MODULE} {{ {args} }})"


def evaluate(nixpkgs: str, hive: dict[str, object]) -> dict[str, Any]:
    """The module's config for these services.hive values (see tests/nix/eval-module.nix)."""
    hive = {"enable": True, **hive}
    expr = f'removeAttrs {module_expr(nixpkgs, hive)} [ "toplevel" "optionDocs" ]'
    result: dict[str, Any] = nix_eval(expr)
    return result


def refusal(nixpkgs: str, hive: dict[str, object]) -> str:
    """The error with which building a system with these values stops (everything the
    module renders is evaluated, then the assertions are checked, as NixOS does)."""
    hive = {"enable": True, **hive}
    out = nix_run(f'removeAttrs {module_expr(nixpkgs, hive)} [ "optionDocs" ]')
    assert out.returncode != 0, f"accepted: {out.stdout}"
    return out.stderr


def fake_package(name: str) -> str:
    path = f"/nix/store/11111111111111111111111111111111-{name}"
    return f'<nix>{{ type = "derivation"; name = "{name}"; outPath = "{path}"; }}'


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


def test_the_module_renders_a_hive_toml_that_hive_loads(nixpkgs: str) -> None:
    out = evaluate(
        nixpkgs,
        {
            "claudePackage": fake_package("claude-code"),
            "settings": {"restart_intensity": 3},
            "operatorSandboxes": ["nspawn"],
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
                        "tools": {"command": "/bin/tools", "args": ["--x"], "allowedTools": ["a"]},
                        "stateful": {"command": "/bin/stateful", "shared": False},
                    },
                    "prompt": 'Say "hi".\nThen \\ stop. ünïcode, ${HOME} $x',
                    "env": {"LANG": "C.UTF-8"},
                },
                "worker": {"sandbox": "bwrap", "runtime": "scripted"},
            },
        },
    )
    cfg = HiveConfig.from_toml_text(out["toml"])
    assert cfg.admin_group == "hive-admin"
    assert cfg.restart_intensity == 3
    assert (str(cfg.state_dir), str(cfg.run_dir)) == ("/var/lib/hive", "/run/hive")
    assert cfg.claude_bin == "/nix/store/11111111111111111111111111111111-claude-code/bin/claude"
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
    stateful, server = bob.mcp_servers  # by name
    assert (server.name, server.command, server.args, server.allowed_tools, server.shared) == (
        "tools", "/bin/tools", ("--x",), ("a",), True,
    )  # fmt: skip
    assert (stateful.name, stateful.shared) == ("stateful", False)
    assert cfg.operator_sandboxes == ("nspawn",)
    manager = cfg.agent("manager")
    assert manager is not None and manager.allowed_recipients is None
    assert manager.model == "claude-opus-4"
    worker = cfg.agent("worker")
    assert worker is not None and (worker.sandbox, worker.runtime) == ("bwrap", "scripted")


def test_the_defaults_are_hives_own(nixpkgs: str) -> None:
    """Every default the module declares; where hive.toml has the same key, the same value
    (runtime and sandbox differ on purpose: NixOS hosts run claude agents in containers)."""
    out = evaluate(nixpkgs, {"agents": {"bob": {}}})
    s = out["settings"]
    assert (s["adminGroup"], s["defaultSandbox"], s["environmentFile"]) == (
        "hive-admin", "nspawn", "/etc/hive/env",
    )  # fmt: skip
    assert (s["watchdogSec"], s["startLimitBurst"], s["startLimitIntervalSec"]) == (30, 5, 300)
    assert (s["uidBase"], s["settings"]) == (uids.UID_BASE, {})
    hive_defaults = HiveConfig()
    assert tuple(s["operatorSandboxes"]) == hive_defaults.operator_sandboxes
    assert s["dashboard"] == {
        "enable": hive_defaults.dashboard,
        "host": hive_defaults.dashboard_host,
        "port": hive_defaults.dashboard_port,
    }
    bob = s["agents"]["bob"]
    defaults = AgentConfig("bob")
    assert (bob["runtime"], bob["sandbox"], bob["uid"]) == ("claude", None, None)
    for nix_key, key in [
        ("model", "model"), ("parent", "parent"), ("network", "network"),
        ("persistent", "persistent"), ("allowedRecipients", "allowed_recipients"),
        ("allowedTools", "allowed_tools"), ("bashAllow", "bash_allow"),
        ("packages", "packages"), ("prompt", "prompt"), ("env", "env"),
    ]:  # fmt: skip
        assert bob[nix_key] == AgentConfig.to_dict(defaults)[key], nix_key
    # The default claude is nixpkgs' claude-code, admitted by a predicate scoped to it
    # (tests/nix/fake-nixpkgs refuses it otherwise, as nixpkgs does).
    assert out["claudePackage"] == f"{STORE}-claude-code"


@pytest.mark.parametrize(
    ("hive", "message"),
    [
        ({"dashboard": {"port": 70000}}, "`services.hive.dashboard.port' is not of type `16 bit"),
        ({"defaultSandbox": "docker"}, "`services.hive.defaultSandbox' is not of type `one of"),
        ({"agents": {"bob": {"runtime": "gpt"}}}, "`services.hive.agents.bob.runtime' is not of"),
        ({"agents": {"bob": {"packages": ["git"]}}}, '`services.hive.agents.bob.packages."[defi'),
        ({"agents": {"bob": {"uid": "x"}}}, "`services.hive.agents.bob.uid' is not of type `null"),
        (
            {"agents": {"bob": {"uid": 0}}},
            "bob.uid' is not of type `null or (positive multiple of 65536)",
        ),
        ({"uidBase": 1610612737}, "`services.hive.uidBase' is not of type `positive multiple of"),
        ({"agents": {"bob": {"colour": "red"}}}, "`services.hive.agents.bob.colour' does not ex"),
        ({"agents": {"bob": {"mcpServers": {"t": {}}}}}, "`services.hive.agents.bob.mcpServers.t"),
    ],
    ids=[
        "port",
        "sandbox",
        "runtime",
        "packages",
        "uid",
        "uid-0",
        "uid-base",
        "unknown",
        "mcp-command",
    ],
)
def test_a_value_of_the_wrong_type_is_refused(
    nixpkgs: str, hive: dict[str, object], message: str
) -> None:
    assert message in refusal(nixpkgs, hive)


def test_module_assertions_stop_the_build_and_say_what_to_change(nixpkgs: str) -> None:
    names: dict[int, list[str]] = {}
    for i in range(10 * uids.SLOTS):  # two short names with the same preferred uid
        name = f"n{i}"
        names.setdefault(uids.preferred_slot(name), []).append(name)
        if len(names[uids.preferred_slot(name)]) == 2:
            pair = names[uids.preferred_slot(name)]
            break
    hive: dict[str, object] = {
        "agents": {
            "averylongname": {},
            pair[0]: {},
            pair[1]: {},
            "orphan": {"parent": "nobody"},
            "fine": {"sandbox": "bwrap", "uid": 7 * uids.BLOCK},
        }
    }
    out = evaluate(nixpkgs, hive)
    messages = "\n".join(out["failedAssertions"])
    assert "h-averylongname is longer than nixos-container's 11 characters" in messages
    assert 'set sandbox = "bwrap" for this agent' in messages
    assert f"{', '.join(sorted(pair))} get the same uid block; set `uid` on one of them" in messages
    assert "parent 'nobody' is not a declared agent" in messages
    assert len(out["failedAssertions"]) == 3
    stopped = refusal(nixpkgs, hive)
    assert "Failed assertions:" in stopped and "parent 'nobody' is not a declared" in stopped
    assert nix_eval(f"{module_expr(nixpkgs, {'enable': True})}.toplevel") == "ok"


def nixos_unit(service: dict[str, Any]) -> dict[tuple[str, str], str]:
    """systemd.services.<name> as NixOS renders it into a unit file: the unit-level
    attributes in [Unit], `path` as PATH (bin and sbin of each), serviceConfig in [Service]."""
    unit = {
        ("Unit", "Description"): service["description"],
        ("Unit", "After"): " ".join(service["after"]),
        ("Unit", "Wants"): " ".join(service["wants"]),
        ("Unit", "StartLimitIntervalSec"): str(service["startLimitIntervalSec"]),
        ("Unit", "StartLimitBurst"): str(service["startLimitBurst"]),
        ("Unit", "X-Restart-Triggers"): " ".join(service["restartTriggers"]),
        ("Install", "WantedBy"): " ".join(service["wantedBy"]),
    }
    bins = [f"{p}/{d}" for d in ("bin", "sbin") for p in service["path"]]
    unit["Service", "Environment"] = f'"PATH={":".join(bins)}"'
    for key, value in service["serviceConfig"].items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        unit["Service", key] = text
    return unit


def unit_entries(text: str) -> dict[tuple[str, str], str]:
    section, out = "", {}
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[section, key] = value
    return out


def test_the_unit_is_the_one_hive_install_systemd_writes(nixpkgs: str) -> None:
    """The module's unit against hive.systemd's for the same settings: equal, except for
    what only NixOS has (a restart when hive.toml changes; /run/hive kept for the
    containers' bind mounts) and PATH (store paths there, system directories on Debian)."""
    out = evaluate(nixpkgs, {"watchdogSec": 20, "startLimitBurst": 3, "agents": {"bob": {}}})
    nix = nixos_unit(out["service"])
    debian = unit_entries(
        render_unit(
            UnitSettings(
                exec_start=(f"{STORE}-hive/bin/hive-supervisor",),
                watchdog_sec=20,
                start_limit_burst=3,
                path=("/usr/local/lib/claude/bin",),
            )
        )
    )
    only_nix = {k: nix.pop(k) for k in set(nix) - set(debian)}
    assert only_nix == {
        ("Unit", "X-Restart-Triggers"): f"{STORE}-hive.toml",
        ("Service", "RuntimeDirectoryPreserve"): "yes",
    }
    assert set(debian) - set(nix) == set()
    path = nix.pop(("Service", "Environment"))
    debian.pop(("Service", "Environment"))
    assert path.startswith(f'"PATH={STORE}-hive/bin:{STORE}-bubblewrap/bin:{STORE}-util-linux/')
    # systemd reads true and yes alike.
    assert nix.pop(("Service", "PrivateTmp")) == "true"
    assert debian.pop(("Service", "PrivateTmp")) == "yes"
    assert nix == debian


def test_each_nspawn_agent_gets_an_unprivileged_container(nixpkgs: str) -> None:
    out = evaluate(
        nixpkgs,
        {
            "claudePackage": "<nix>null",
            "agents": {
                "manager": {},
                "bob": {"network": False, "packages": [fake_package("git")]},
                "w": {"sandbox": "bwrap"},
                "s": {"runtime": "scripted"},
            },
        },
    )
    assert sorted(out["containers"]) == ["h-bob", "h-manager", "h-s"]
    bob = out["containers"]["h-bob"]
    uid = uids.slot_uid(uids.preferred_slot("bob"))
    assert bob["privateUsers"] == uid
    assert bob["privateNetwork"] is True
    assert out["containers"]["h-manager"]["privateNetwork"] is False
    assert bob["bindMounts"] == {
        "/var/lib/hive/agents/bob": {
            "hostPath": "/var/lib/hive/agents/bob",
            "mountPoint": "/var/lib/hive/agents/bob",
            "isReadOnly": False,
        },
        "/run/hive/agents": {
            "hostPath": "/run/hive/agents",
            "mountPoint": "/run/hive/agents",
            "isReadOnly": True,
        },
    }
    assert f"d /var/lib/hive/agents/bob 0700 {uid} {uid} -" in out["tmpfiles"]
    # claude-code is in the container's own nixpkgs only because its predicate admits it,
    # and that predicate admits nothing else.
    assert (bob["claudeAllowed"], bob["otherUnfreeAllowed"]) == (True, False)
    assert bob["packages"] == ["hive", "claude-code", "git"]
    assert bob["stateVersion"] == "25.05"
    assert out["containers"]["h-s"]["packages"] == ["hive"]  # a scripted agent: no claude
    assert out["groups"] == ["hive-admin"] and out["systemPackages"] == ["hive"]


def test_a_disabled_module_configures_nothing(nixpkgs: str) -> None:
    out = evaluate(nixpkgs, {"enable": False, "agents": {"bob": {}}})
    assert out["enabled"] is False and out["containers"] == {} and out["toml"] is None
    assert out["service"] is None and out["groups"] == [] and out["failedAssertions"] == []


def test_the_options_manual_renders(nixpkgs: str) -> None:
    """NixOS builds its options manual (documentation.nixos, on by default) from every
    module's options: a default that cannot be shown would fail nixos-rebuild."""
    docs = nix_eval(f"{module_expr(nixpkgs, {'enable': True})}.optionDocs")
    by_name = {d["name"]: d for d in docs}
    assert by_name["services.hive.dashboard.port"]["default"] == "8417"
    assert by_name["services.hive.agents.<name>.sandbox"]["type"] == (
        'null or one of "process", "bwrap", "nspawn"'
    )
    assert "services.hive.agents.<name>.mcpServers.<name>.command" in by_name
    assert by_name["services.hive.claudePackage"]["default"].startswith("claude-code")


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
