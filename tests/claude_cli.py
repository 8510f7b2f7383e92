"""Where the real ``claude`` CLI is for the end-to-end tests.

The tests run the real CLI and never skip: a missing binary is a failure that says how to
install it (``scripts/install-claude.sh``, which puts it in <repo>/.cache/claude).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / ".cache" / "claude" / "node_modules" / ".bin" / "claude"


def claude_bin() -> str:
    """Path of the claude binary: $HIVE_CLAUDE_BIN, else the repo's .cache install."""
    configured = os.environ.get("HIVE_CLAUDE_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"HIVE_CLAUDE_BIN={configured}" if configured else str(path)
        pytest.fail(
            f"the claude CLI is not installed ({where} is missing or not executable); "
            f"run: bash {REPO / 'scripts' / 'install-claude.sh'}",
            pytrace=False,
        )
    return str(path)
