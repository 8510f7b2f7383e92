"""The layers that plug into the daemon at start-up.

Each module listed here is imported by ``hive.daemon.run_hive`` before the actor tree
starts. On import a module registers what it adds: admin verbs (hive.io.admin_socket.VERBS),
agent-socket ops (hive.io.agent_socket.EXTRA_OPS), actors under the Supervisor
(hive.actors.supervisor.EXTRA_CHILDREN) and IO tasks (hive.daemon.STARTUP_HOOKS).
"""

from __future__ import annotations

import importlib

MODULES: list[str] = [
    "hive.actors.stats",
    "hive.control.plugin",
    "hive.ui.server",
]


def load() -> None:
    for name in MODULES:
        importlib.import_module(name)
