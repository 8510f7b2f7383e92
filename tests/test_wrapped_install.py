"""hive installed the way Nix's buildPythonApplication installs it still starts its agents.

There, ``sys.executable`` is a bare interpreter that cannot import hive: each console script
adds hive's and its dependencies' directories to ``sys.path`` itself, and nothing else
(no PYTHONPATH, no virtualenv). This test builds such an install from this checkout
(``pip install --no-deps --target``; each dependency a directory of its own, linked from
the dev venv, all offline), wraps the console scripts as Nix does, and then runs a real
supervisor from it: a scripted agent plays a turn, the hive-mcp command a claude agent
would get (the MCP relay, by path, on the interpreter helper_python names) starts and the
supervisor serves the agent over MCP through it, and a claude agent (the real CLI against
the fake API) plays a turn whose tool call goes through that relay.
hive.runtimes.base.helper_python is what makes all three work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.claude_hive import ClaudeHive, claude_agent, hive_toml
from tests.fake_anthropic import FakeAnthropic, ToolUse
from tests.hive_harness import START_TIMEOUT, RunningHive

REPO = Path(__file__).resolve().parent.parent
# Nix's wrapPythonPrograms puts lines like these at the top of each console script: the
# store paths of hive and of every dependency become site dirs; the interpreter adds none.
WRAPPER = """\
#!{python}
import site, sys
sys.argv[0] = {argv0!r}
_before = list(sys.path)
for _dir in {dirs!r}:
    site.addsitedir(_dir)
# Ahead of the interpreter's own site-packages, as under Nix, where it has none.
sys.path[:] = _before[:1] + [p for p in sys.path if p not in _before] + _before[1:]
{body}
"""
SUPERVISOR = "from hive.cli.supervisor import main\nsys.exit(main())"
# What the supervisor would hand claude as its hive MCP server, computed in the wrapped
# install (argv: the state dir and the agent).
PRINT_MCP_SERVER = """\
import json
from pathlib import Path
import hive
from hive.config import AgentConfig, HiveConfig
from hive.process import AgentPaths
from hive.runtimes.base import TurnInput
from hive.runtimes.claude import ClaudeRuntime
state, name = Path(sys.argv[1]), sys.argv[2]
paths = AgentPaths.for_agent(name, state, state / "run")
agent = AgentConfig(name, runtime="claude")
turn = TurnInput(HiveConfig(), agent, paths, turn_id=1, model="", messages=())
server = ClaudeRuntime(environ={}).mcp_config(turn)["mcpServers"]["hive"]
print(json.dumps({"hive": hive.__file__, "server": server}))
"""
CONFIG = """\
[[agent]]
name = "echo"
sandbox = "process"
[[agent.script]]
match = "*"
do = [{op = "reply", body = "pong: {body}"}]
"""


@dataclass(frozen=True)
class WrappedInstall:
    bin: Path
    site: Path  # hive itself, as pip --target installed it
    python: str  # the bare interpreter the scripts run on


def build_site(root: Path) -> Path:
    """This checkout, built and installed with pip (no dependencies) into ``root/site``."""
    src = root / "src"
    for part in ("hive", "actors", "ui"):
        shutil.copytree(
            REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__", "node_modules")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    site = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--target", str(site), str(src)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return site


def link_dependencies(root: Path) -> list[Path]:
    """The dev venv's distributions, one directory each (as each is a store path under
    Nix), made of symlinks to its top-level files; hive's own (editable) install left out."""
    venv_site = Path(sysconfig.get_paths()["purelib"])
    dirs = []
    for dist in metadata.distributions(path=[str(venv_site)]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name == "hive":
            continue
        tops = {Path(f).parts[0] for f in dist.files or ()} - {"..", "__pycache__"}
        own = root / "deps" / name
        own.mkdir(parents=True, exist_ok=True)
        for top in tops:
            if (venv_site / top).exists() and not (own / top).exists():
                (own / top).symlink_to(venv_site / top)
        dirs.append(own)
    return dirs


def bare_env() -> dict[str, str]:
    """The environment of a system service: no PYTHONPATH, no virtualenv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSAFEPATH")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def wrapped(tmp_path_factory: pytest.TempPathFactory) -> WrappedInstall:
    root = tmp_path_factory.mktemp("wrapped")
    site, deps = build_site(root), link_dependencies(root)
    assert len(deps) > 20  # hive's closure, and the dev tools: each one a directory
    python = os.path.realpath(sys.executable)  # the venv's base interpreter: no hive
    probe = subprocess.run(
        [python, "-c", "import hive"], cwd=root, env=bare_env(), capture_output=True, check=False
    )
    assert probe.returncode != 0, "the bare interpreter must not import hive by itself"
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, body in [("hive-supervisor", SUPERVISOR), ("print-mcp-server", PRINT_MCP_SERVER)]:
        script = bin_dir / name
        dirs = [str(site), *map(str, deps)]
        script.write_text(WRAPPER.format(python=python, argv0=str(script), dirs=dirs, body=body))
        script.chmod(0o755)
    return WrappedInstall(bin_dir, site, python)


def start_hive(
    wrapped: WrappedInstall, root: Path, config: str = CONFIG, env: dict[str, str] | None = None
) -> RunningHive:
    root.mkdir()
    (root / "hive.toml").write_text(config)
    argv = [str(wrapped.bin / "hive-supervisor"), "--config", str(root / "hive.toml")]
    argv += ["--state-dir", str(root / "state"), "--no-dashboard"]
    with open(root / "supervisor.log", "ab") as log:
        # cwd: not this checkout, whose hive a stray '' on sys.path would import.
        proc = subprocess.Popen(
            argv, cwd=root, env={**bare_env(), **(env or {})}, stdout=log, stderr=log
        )
    hive = RunningHive(root, config, proc)
    hive.wait_until(lambda: hive.admin("version"), START_TIMEOUT, "the wrapped supervisor")
    return hive


def test_a_scripted_agent_plays_a_turn_from_the_wrapped_install(
    wrapped: WrappedInstall, tmp_path: Path
) -> None:
    hive = start_hive(wrapped, tmp_path / "hive")
    try:
        hive.admin("send", to="echo", body="hello")
        turn = hive.wait_until(
            lambda: next((t for t in hive.turns("echo") if t["ended_at"]), None),
            what="the scripted agent helper's turn to end",
        )
        assert turn["exit_class"] == "ok", turn  # it could import hive
        hive.wait_until(
            lambda: any(m["body"] == "pong: hello" for m in hive.messages("operator")),
            what="echo's reply",
        )
    finally:
        assert hive.terminate() == 0


def test_the_hive_mcp_command_a_claude_agent_gets_serves_it(
    wrapped: WrappedInstall, tmp_path: Path
) -> None:
    hive = start_hive(wrapped, tmp_path / "hive")
    try:
        done = subprocess.run(
            [str(wrapped.bin / "print-mcp-server"), str(hive.state_dir), "echo"],
            cwd=tmp_path, env=bare_env(), capture_output=True, text=True, timeout=60,
            check=True,
        )  # fmt: skip
        printed = json.loads(done.stdout)
        assert Path(printed["hive"]).is_relative_to(wrapped.site)
        server = printed["server"]
        assert server["command"] == wrapped.python  # the bare interpreter, as under Nix
        # The relay is a file of the install, run by path; it imports only the standard
        # library, so it needs no PYTHONPATH (the SDK is the wrapped supervisor's).
        assert Path(server["args"][-1]).is_relative_to(wrapped.site)
        assert server["env"] == {"HIVE_SOCKET": str(hive.agent_socket("echo"))}
        params = StdioServerParameters(
            command=server["command"], args=server["args"], env=server["env"], cwd=tmp_path
        )
        tools, sent = trio.run(use_hive_mcp, params)
        assert {"send", "recv", "set_status"} <= tools
        [mail] = hive.wait_until(
            lambda: [m for m in hive.messages("operator") if m["body"] == "hi from hive-mcp"],
            what="the message sent through hive-mcp",
        )
        assert mail["from"] == "echo" and sent == f"sent to operator as message #{mail['id']}"
    finally:
        assert hive.terminate() == 0


async def use_hive_mcp(params: StdioServerParameters) -> tuple[set[str], str]:
    """Start hive-mcp as claude would, initialize, list its tools and send one message."""
    async with Client(params, read_timeout_seconds=60) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("send", {"to": "operator", "body": "hi from hive-mcp"})
        assert not result.is_error, result
        text = "".join(getattr(block, "text", "") for block in result.content)
        return tools, text


def test_a_claude_agent_plays_a_turn_through_hive_mcp_from_the_wrapped_install(
    wrapped: WrappedInstall, tmp_path: Path, api: FakeAnthropic
) -> None:
    """The real claude CLI (against the fake API) starts hive-mcp as the wrapped
    supervisor told it to, and the model's tool call goes through it."""
    api.script(ToolUse("mcp__hive__send", {"to": "operator", "body": "hi via hive-mcp"}))
    config = hive_toml(claude_agent("alice"))
    hive = ClaudeHive(start_hive(wrapped, tmp_path / "hive", config, api.env()), api)
    try:
        hive.admin("send", to="alice", body="say hi")
        [turn] = hive.wait_turns("alice", 1)
        assert turn["exit_class"] == "ok", hive.diagnosis("alice")
        [mail] = [m for m in hive.messages("operator") if m["body"] == "hi via hive-mcp"]
        assert mail["from"] == "alice"
    finally:
        assert hive.terminate() == 0
