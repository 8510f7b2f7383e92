"""The claude CLI version is pinned in one place (hive/runtimes/claude_version.py): the
installer reads it from there, the tests' CLI is that version, and every doc that quotes a
CLI version quotes that one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hive.runtimes.claude_version import CLAUDE_CLI_VERSION
from tests.claude_cli import claude_bin, cli_version

REPO = Path(__file__).resolve().parent.parent
# "CLI 2.1.197", "`claude` CLI 2.1.197", "claude-code@2.1.197"
QUOTED = re.compile(r"(?:CLI|claude-code@)\s*(\d+\.\d+\.\d+)")


def test_the_installer_reads_the_pin() -> None:
    script = REPO / "scripts" / "install-claude.sh"
    done = subprocess.run(
        ["bash", str(script), "--print-version"], capture_output=True, text=True, check=True
    )
    assert done.stdout == CLAUDE_CLI_VERSION + "\n"


def test_the_tests_run_the_pinned_cli() -> None:
    assert cli_version(claude_bin()) == CLAUDE_CLI_VERSION


def test_every_doc_quotes_the_pinned_version() -> None:
    quoted: dict[str, set[str]] = {}
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for version in QUOTED.findall(doc.read_text()):
            quoted.setdefault(version, set()).add(doc.name)
    assert set(quoted) == {CLAUDE_CLI_VERSION}, quoted
    assert {"claude-runtime.md", "deploy.md"} <= quoted[CLAUDE_CLI_VERSION]
