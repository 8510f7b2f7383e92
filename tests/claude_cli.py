"""Where the real ``claude`` CLI is for the end-to-end tests.

The tests run the real CLI and never skip: a missing binary is a failure that says how to
install it (``scripts/install-claude.sh``, which puts it in <repo>/.cache/claude). It must be
the version hive pins (``hive/runtimes/claude_version.py``).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

from hive.runtimes.claude_version import CLAUDE_CLI_VERSION

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / ".cache" / "claude" / "node_modules" / ".bin" / "claude"


def claude_bin() -> str:
    """Path of the claude binary: $HIVE_CLAUDE_BIN, else the repo's .cache install."""
    configured = os.environ.get("HIVE_CLAUDE_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    where = f"HIVE_CLAUDE_BIN={configured}" if configured else str(path)
    install = f"run: bash {REPO / 'scripts' / 'install-claude.sh'}"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"the claude CLI is not installed ({where} is missing or not executable); {install}",
            pytrace=False,
        )
    version = cli_version(str(path))
    if version != CLAUDE_CLI_VERSION:
        pytest.fail(
            f"the claude CLI at {where} is {version or 'unknown'}, but hive is tested against "
            f"{CLAUDE_CLI_VERSION} (hive/runtimes/claude_version.py); {install}",
            pytrace=False,
        )
    return str(path)


@functools.cache
def cli_version(path: str) -> str:
    """What ``claude --version`` says its version is ("2.1.197 (Claude Code)" -> "2.1.197")."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    words = done.stdout.split()
    return words[0] if done.returncode == 0 and words else ""
