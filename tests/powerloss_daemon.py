"""hive-supervisor on a disk that keeps only what was fsynced (tests/powerloss_vfs.py).

    python -m tests.powerloss_daemon --config hive.toml --state-dir state --no-dashboard

Same arguments as hive-supervisor. SIGKILL of this process is a power cut: the real files
hold only what SQLite synced.
"""

from __future__ import annotations

from hive.cli import supervisor
from tests import powerloss_vfs

if __name__ == "__main__":
    powerloss_vfs.install()  # before the daemon opens its first connection
    supervisor.main()
