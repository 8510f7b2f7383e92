"""First run with the README's hive.toml: what is missing stops the start with one clear
line, before any socket exists; hivectl's documented verbs exist."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hive.runtimes.claude_version import CLAUDE_CLI_VERSION
from tests.control_support import hivectl
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

# The README's minimal hive.toml (two claude agents), without the dashboard port line.
README_TOML = """
[hive]
restart_intensity = 5
restart_period = 60
{extra}

[[agent]]
name = "manager"
runtime = "claude"
model = "claude-sonnet-4-5"

[[agent]]
name = "alice"
parent = "manager"
runtime = "claude"
allowed_recipients = ["manager"]
sandbox = "process"
"""


def clean_env(path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any model credential, and PATH = ``path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_"))}
    return {**env, "PATH": str(path), **extra}


def supervisor(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hive.cli.supervisor", "--config", str(root / "hive.toml"),
         "--state-dir", str(root / "state"), "--no-dashboard"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def fake_cli(root: Path) -> Path:
    """An executable that stands for the claude CLI (no turn runs in these tests)."""
    path = root / "bin" / "claude"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def assert_nothing_left(root: Path) -> None:
    run = root / "state" / "run"
    assert not (run / "admin.sock").exists()
    assert not list((run / "agents").glob("*.sock")) if (run / "agents").exists() else True


def test_no_claude_cli_stops_the_start_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "hive.toml").write_text(README_TOML.format(extra=""))
    (tmp_path / "empty").mkdir()
    done = supervisor(tmp_path, clean_env(tmp_path / "empty", ANTHROPIC_API_KEY="k"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hive-supervisor: agents 'manager', 'alice' (runtime claude): the claude CLI 'claude' "
        "is not on PATH; install Claude Code (npm install -g "
        f"@anthropic-ai/claude-code@{CLAUDE_CLI_VERSION}) or set [hive] claude_bin to its full "
        "path"
    ]
    assert_nothing_left(tmp_path)


def test_no_credential_stops_the_start_and_the_named_fix_works(
    tmp_path: Path, make_hive: MakeHive
) -> None:
    cli = fake_cli(tmp_path)
    root = tmp_path / "hive"
    root.mkdir()
    toml = README_TOML.format(extra=f'claude_bin = "{cli}"')
    (root / "hive.toml").write_text(toml)
    env = clean_env(Path("/usr/bin:/bin"))
    done = supervisor(root, env)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("hive-supervisor: agents 'manager', 'alice' (runtime claude): no ")
    assert "ANTHROPIC_API_KEY" in line and "hivectl login manager --config" in line
    assert "Traceback" not in done.stderr
    assert_nothing_left(root)

    # The fix the line names: store a token for each agent, offline, then start.
    token = tmp_path / "token"
    token.write_text("sk-ant-oat01-stored-before-the-first-start\n")
    for name in ("manager", "alice"):
        login = subprocess.run(
            [sys.executable, "-m", "hive.cli.hivectl", "login", name, "--config",
             str(root / "hive.toml"), "--state-dir", str(root / "state"), "--token-file",
             str(token), "--no-reset"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
    hive = make_hive(toml, env=env)
    assert {r["name"] for r in hive.admin("list")["agents"]} == {"manager", "alice"}


def test_hivectl_transcript_shows_a_turn(make_hive: MakeHive) -> None:
    hive = make_hive(
        '[[agent]]\nname = "bob"\n[[agent.script]]\nmatch = "*"\n'
        'do = [{op = "text", text = "thinking \\u001b]0;title\\u0007"}, '
        '{op = "reply", body = "pong"}]\n'
    )
    hive.admin("send", to="bob", body="ping")
    [turn] = hive.wait_until(
        lambda: [t for t in hive.turns("bob") if t["ended_at"]], what="bob's turn"
    )
    by_id = hivectl(hive, "transcript", str(turn["id"]))
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.json() == hive.admin("transcript", turn_id=turn["id"])
    newest = hivectl(hive, "transcript", "bob", json_out=False)
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout.startswith(f"turn #{turn['id']}: ")
    assert "thinking" in newest.stdout and "\x1b" not in newest.stdout  # escaped, not raw
    kinds = [line.split()[1] for line in newest.stdout.splitlines()[1:]]
    assert [e["kind"] for e in by_id.json()["events"]] == kinds
    missing = hivectl(hive, "transcript", "nobody")
    assert missing.returncode == 1


REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s#]+)[^)]*\)")  # a markdown link's target
UPWARD = re.compile(r"(?:\.\./)+[\w.\-/]+")  # a relative path that climbs out of its dir


def project_texts() -> list[Path]:
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for top in ("hive", "actors", "ui"):
        texts += [p for p in sorted((REPO / top).rglob("*")) if p.suffix in (".py", ".js", ".html")
                  and "node_modules" not in p.parts]  # fmt: skip
    return texts


def test_project_docs_and_code_point_only_inside_the_repository() -> None:
    outside = []
    for path in project_texts():
        text = path.read_text(errors="replace")
        targets = UPWARD.findall(text)
        if path.suffix == ".md":
            targets += [t for t in LINK.findall(text) if "://" not in t and ":" not in t]
        for target in targets:
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                outside.append(f"{path.relative_to(REPO)}: {target}")
    assert outside == []
