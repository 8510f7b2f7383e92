"""Runtimes and sandboxes are plugins found through one registry (entry points): a package
that is not hive adds one by declaring it, and what hive does beside the turns (notes
compaction, login) asks the runtime's interface, never for the claude runtime by name."""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import hive
from hive.cli.login import LoginError, login_command
from hive.config import AgentConfig, ConfigError, HiveConfig
from hive.plugins import RUNTIMES, SANDBOXES, UnknownPlugin
from hive.runtimes import get_runtime
from hive.sandboxes import SandboxError, get_sandbox
from tests.hive_harness import RunningHive

ROOT = Path(__file__).resolve().parents[1]

# A third-party package: a runtime that plays scripts, a sandbox that runs plain processes,
# and a runtime whose agents log in with a command of its own.
PLUGIN_MODULE = """
from hive.process import ProcessSpec
from hive.runtimes.scripted import ScriptedRuntime
from hive.sandboxes.process import ProcessSandbox


class ParrotRuntime(ScriptedRuntime):
    name = "parrot"


class PlainSandbox(ProcessSandbox):
    name = "plain"


class DoorRuntime(ScriptedRuntime):
    name = "door"

    def login(self):
        return self

    def login_spec(self, hive, agent, paths, method):
        return ProcessSpec(argv=("door-login", agent.name, method), env={})

    def store_login_token(self, paths, token):
        raise NotImplementedError

    def preflight(self, hive, agents, environ):
        return [f"agent {a.name}: the door is shut" for a in agents]
"""

ENTRY_POINTS = """
[hive.runtimes]
parrot = parrot_plugin:ParrotRuntime
door = parrot_plugin:DoorRuntime

[hive.sandboxes]
plain = parrot_plugin:PlainSandbox
"""


def install_plugin(site: Path) -> Path:
    """The package as pip would leave it in site-packages: a module and its dist-info."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "parrot_plugin.py").write_text(PLUGIN_MODULE)
    info = site / "parrot_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: parrot-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("parrot_plugin", None)


def test_hives_own_plugins_are_registered_by_name() -> None:
    assert RUNTIMES.names() == ("claude", "scripted")
    assert SANDBOXES.names() == ("auto", "bwrap", "nspawn", "process")
    assert get_runtime("scripted").name == "scripted"
    assert get_sandbox("process").name == "process"
    with pytest.raises(UnknownPlugin, match="unknown runtime 'gpt': use one of claude, scripted"):
        get_runtime("gpt")
    with pytest.raises(SandboxError, match="unknown sandbox backend 'docker'"):
        get_sandbox("docker")


def test_a_third_party_runtime_and_sandbox_are_found_once_installed(
    plugin_on_path: Path,
) -> None:
    assert "parrot" in RUNTIMES.names() and "plain" in SANDBOXES.names()
    assert get_runtime("parrot").name == "parrot"
    assert get_sandbox("plain").name == "plain"


def test_hive_toml_names_a_third_party_runtime_and_sandbox_and_its_agent_plays_turns(
    tmp_path: Path,
) -> None:
    site = install_plugin(tmp_path / "site")
    toml = textwrap.dedent(
        """
        [[agent]]
        name = "polly"
        runtime = "parrot"
        sandbox = "plain"
        [[agent.script]]
        match = "*"
        do = [{op = "reply", body = "polly says: {body}"}]
        """
    )
    root = tmp_path / "hive"
    root.mkdir()
    hive_proc = RunningHive.start(root, toml, {"PYTHONPATH": f"{site}:{ROOT}"})
    try:
        [row] = hive_proc.admin("list")["agents"]
        assert row["name"] == "polly"
        hive_proc.admin("send", to="polly", body="hello")
        hive_proc.wait_until(
            lambda: any(m["body"] == "polly says: hello" for m in hive_proc.messages("operator")),
            what="polly's reply",
        )
    finally:
        hive_proc.terminate()


def test_an_unknown_runtime_in_hive_toml_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match="'runtime' must be one of claude, scripted"):
        HiveConfig.from_toml_text('[[agent]]\nname = "a"\nruntime = "parrot"\n')


def test_login_asks_the_agents_runtime(plugin_on_path: Path, tmp_path: Path) -> None:
    cfg = HiveConfig(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    door = AgentConfig(name="dora", runtime="door")
    assert login_command(cfg, door, "setup-token").argv == ("door-login", "dora", "setup-token")
    with pytest.raises(LoginError, match="runs the scripted runtime: no login"):
        login_command(cfg, AgentConfig(name="sam", runtime="scripted"), "setup-token")


def test_each_runtime_checks_its_own_agents_before_the_start(
    plugin_on_path: Path, tmp_path: Path
) -> None:
    from hive import preflight

    cfg = HiveConfig.from_toml_text(
        '[[agent]]\nname = "dora"\nruntime = "door"\n[[agent]]\nname = "sam"\n'
    ).with_overrides(state_dir=tmp_path / "state")
    assert preflight.problems(cfg, environ={}) == ["agent dora: the door is shut"]


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (in functions, under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    return names


def test_no_code_outside_the_runtimes_builds_or_checks_the_claude_runtime() -> None:
    product = [*(ROOT / "hive").rglob("*.py"), *(ROOT / "actors").rglob("*.py")]
    product += list((ROOT / "ui").rglob("*.py"))
    for path in product:
        if path.parent.name != "runtimes":
            assert "ClaudeRuntime" not in names_used(path), path


def test_notes_do_not_import_the_turn_runner() -> None:
    # hive.io.turns runs the notes hook; the hook must not import it back (an import cycle).
    assert not {m for m in imports_of(ROOT / "hive" / "notes.py") if m.startswith("hive.io.turns")}


def test_the_package_names_its_public_api() -> None:
    for name in hive.__all__:
        assert getattr(hive, name) is not None, name
    assert {"Envelope", "AgentConfig", "HiveConfig", "Runtime", "Sandbox", "RUNTIMES"} <= set(
        hive.__all__
    )
