"""hive-supervisor started as a shell often starts it: a soft RLIMIT_NOFILE far below the
hard one (``HIVE_TEST_NOFILE=SOFT:HARD``). Same arguments as hive-supervisor."""

from __future__ import annotations

import os
import resource

from hive.cli import supervisor

if __name__ == "__main__":
    soft, hard = (int(n) for n in os.environ["HIVE_TEST_NOFILE"].split(":"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    supervisor.main()
