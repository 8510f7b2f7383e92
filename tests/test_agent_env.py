"""An agent's config ``env`` reaches only the program inside its sandbox: never the root-run
wrappers (prlimit, setpriv; sh and nsenter for nspawn), and loader or interpreter hooks are
refused as config, naming the key."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive.config import AgentConfig, ConfigError, HiveConfig
from hive.process import ProcessSpec
from hive.runtimes.claude import ClaudeRuntime
from hive.sandboxes import BwrapSandbox, NspawnSandbox
from tests.sandbox_env import HiveLayout, make_layout

# A library that, loaded into any process, appends that process's name to MARKER.
PRELOAD_C = r"""
#include <stdio.h>
#include <string.h>
__attribute__((constructor)) static void mark(void) {
    char comm[64] = "?";
    FILE *self = fopen("/proc/self/comm", "r");
    if (self) {
        if (fgets(comm, sizeof comm, self)) comm[strcspn(comm, "\n")] = 0;
        fclose(self);
    }
    FILE *out = fopen(MARKER, "a");
    if (out) { fprintf(out, "%s\n", comm); fclose(out); }
}
"""


@pytest.fixture
def layout() -> Iterator[HiveLayout]:
    yield from make_layout()


def preload_library(where: Path, marker: Path) -> Path:
    source, library = where / "mark.c", where / "mark.so"
    source.write_text(PRELOAD_C)
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the LD_PRELOAD probe (.ci/apt-packages.txt)"
    subprocess.run(
        [gcc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library), str(source)],
        check=True,
    )
    library.chmod(0o755)
    return library


def unvalidated(name: str, env: dict[str, str], **kw: object) -> AgentConfig:
    """A config that skipped validation (as a row written before the env rules would):
    the sandbox must keep its env away from root on its own."""
    return AgentConfig.model_construct(name=name, env=env, **kw)


def test_the_agents_env_is_set_by_bwrap_after_the_drop_never_for_root(layout: HiveLayout) -> None:
    sandbox = BwrapSandbox()
    bob = unvalidated("bob", {"LD_PRELOAD": "/x/mark.so", "REGION": "eu", "PATH": "/agent/bin"})
    base = ClaudeRuntime(environ={"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "k"})
    env = base.agent_env(bob, layout.bob)
    assert env["LD_PRELOAD"] == "/x/mark.so"  # the runtime builds the whole env ...
    sandbox.prepare(bob, layout.bob)
    wrapped = sandbox.wrap(ProcessSpec(("/bin/true",), env=env), bob, layout.bob)
    # ... and the chain root starts gets none of the agent's variables
    assert "LD_PRELOAD" not in wrapped.env and "REGION" not in wrapped.env
    assert wrapped.env["PATH"] == os.defpath  # the agent's PATH is not root's
    assert wrapped.env["ANTHROPIC_API_KEY"] == "k"
    argv = list(wrapped.argv)
    bwrap_at = argv.index(shutil.which("bwrap") or "bwrap")
    assert "LD_PRELOAD" not in argv[:bwrap_at]
    setenv = [tuple(argv[i + 1 : i + 3]) for i, a in enumerate(argv) if a == "--setenv"]
    for pair in (("LD_PRELOAD", "/x/mark.so"), ("REGION", "eu"), ("PATH", "/agent/bin")):
        assert pair in setenv
    assert argv.index("--setenv") > bwrap_at
    # In the sandbox: env gives the program SIGTERM's default back (bwrap ignores it).
    inner = argv[argv.index("--", bwrap_at) + 1 :]
    assert inner[1:] == ["--default-signal=TERM", "/bin/true"] and inner[0].endswith("env")


def test_ld_preload_from_the_agents_env_loads_only_inside_the_sandbox(
    layout: HiveLayout,
) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test proves what root's prlimit and setpriv load: run it as root")
    sandbox = BwrapSandbox()
    marker = layout.bob.root / "loaded-into"
    library = preload_library(layout.bob.root, marker)
    bob = unvalidated("bob", {"LD_PRELOAD": str(library), "REGION": "eu"})
    sandbox.prepare(bob, layout.bob)
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library), "REGION": "eu"}
    code = ("/bin/sh", "-c", 'echo "$REGION $LD_PRELOAD"')
    wrapped = sandbox.wrap(ProcessSpec(code, env=env), bob, layout.bob)
    done = subprocess.run(
        wrapped.argv, env=wrapped.env, cwd=wrapped.cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eu {library}"  # the sandboxed program has its env
    loaded = marker.read_text().split()
    # env is the sandbox's own first program (it restores SIGTERM's default), inside.
    assert loaded and set(loaded) <= {"env", "sh", "echo"} and loaded.count("env") <= 1, loaded
    assert marker.stat().st_uid == sandbox.agent_uid(layout.bob)  # written from inside


def test_nspawn_sets_the_agents_env_inside_the_container(layout: HiveLayout) -> None:
    bob = unvalidated("bob", {"LD_PRELOAD": "/x.so", "REGION": "eu"})
    env = {"PATH": "/usr/bin", "LD_PRELOAD": "/x.so", "REGION": "eu"}
    wrapped = NspawnSandbox().wrap(ProcessSpec(("claude", "-p"), env=env), bob, layout.bob)
    assert "LD_PRELOAD" not in wrapped.env and "REGION" not in wrapped.env
    # after nsenter: env(1) in the container, then the program
    tail = ("/usr/bin/env", "LD_PRELOAD=/x.so", "REGION=eu", "claude", "-p")
    assert wrapped.argv[-len(tail) :] == tail


@pytest.mark.parametrize(
    "key",
    [
        "LD_PRELOAD", "LD_AUDIT", "ld_library_path", "GLIBC_TUNABLES", "GCONV_PATH", "BASH_ENV",
        "ENV", "BASH_FUNC_ls%%", "PYTHONSTARTUP", "PYTHONPATH", "PERL5OPT", "NODE_OPTIONS",
        "HIVE_SOCKET", "A=B", "",
    ],
)  # fmt: skip
def test_a_loader_or_interpreter_hook_is_refused_naming_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_dict({"name": "bob", "env": {key: "x"}})
    assert repr(key) in str(info.value) or key in str(info.value)
    assert "agent 'bob': env" in str(info.value)
    toml = f'[[agent]]\nname = "bob"\n[agent.env]\n"{key}" = "x"\n'
    with pytest.raises(ConfigError, match="env"):
        HiveConfig.from_toml_text(toml)


def test_ordinary_variables_are_kept_and_must_be_strings() -> None:
    cfg = AgentConfig.from_dict({"name": "bob", "env": {"REGION": "eu", "PYTHONUNBUFFERED": "1"}})
    assert cfg.env == {"REGION": "eu", "PYTHONUNBUFFERED": "1"}
    with pytest.raises(ConfigError, match="REGION must be a string"):
        AgentConfig.from_dict({"name": "bob", "env": {"REGION": 1}})
    with pytest.raises(ConfigError, match=r"mcp_servers\[0\].env: LD_PRELOAD may not be set"):
        AgentConfig.from_dict(
            {
                "name": "bob",
                "mcp_servers": [{"name": "x", "command": "x", "env": {"LD_PRELOAD": "y"}}],
            }
        )
