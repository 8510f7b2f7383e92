"""hive: a supervisor for a fleet of long-lived AI coding agents.

The public API, for code that drives or extends hive (a runtime or sandbox plugin, a client):

- settings: ``HiveConfig`` (hive.toml) and ``AgentConfig`` (one agent), ``ConfigError``;
- the wire: ``Envelope`` (one message), ``WireError``;
- plugins: the ``Runtime`` and ``Sandbox`` interfaces, ``RuntimeDefaults``, the turn types
  (``TurnInput``, ``TurnEvent``, ``TurnOutcome``, ``ExitClass``), the registries ``RUNTIMES``
  and ``SANDBOXES`` with ``get_runtime`` and ``get_sandbox``;
- clients of a running hive: ``SyncClient``, ``HiveError``.

Names are imported when first used, so ``import hive`` stays cheap for the helpers that run
inside a sandbox.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    "HiveConfig": "hive.config",
    "AgentConfig": "hive.config",
    "ConfigError": "hive.config",
    "Envelope": "hive.wire",
    "WireError": "hive.wire",
    "Runtime": "hive.runtimes.base",
    "RuntimeDefaults": "hive.runtimes.base",
    "TurnInput": "hive.runtimes.base",
    "TurnEvent": "hive.runtimes.base",
    "TurnOutcome": "hive.runtimes.base",
    "ExitClass": "hive.runtimes.base",
    "get_runtime": "hive.runtimes",
    "Sandbox": "hive.sandboxes.base",
    "SandboxError": "hive.sandboxes.base",
    "get_sandbox": "hive.sandboxes",
    "RUNTIMES": "hive.plugins",
    "SANDBOXES": "hive.plugins",
    "SyncClient": "hive.client",
    "HiveError": "hive.client",
}

__all__ = [
    "RUNTIMES",
    "SANDBOXES",
    "AgentConfig",
    "ConfigError",
    "Envelope",
    "ExitClass",
    "HiveConfig",
    "HiveError",
    "Runtime",
    "RuntimeDefaults",
    "Sandbox",
    "SandboxError",
    "SyncClient",
    "TurnEvent",
    "TurnInput",
    "TurnOutcome",
    "WireError",
    "get_runtime",
    "get_sandbox",
]

if TYPE_CHECKING:
    from hive.client import HiveError, SyncClient
    from hive.config import AgentConfig, ConfigError, HiveConfig
    from hive.plugins import RUNTIMES, SANDBOXES
    from hive.runtimes import get_runtime
    from hive.runtimes.base import (
        ExitClass,
        Runtime,
        RuntimeDefaults,
        TurnEvent,
        TurnInput,
        TurnOutcome,
    )
    from hive.sandboxes import get_sandbox
    from hive.sandboxes.base import Sandbox, SandboxError
    from hive.wire import Envelope, WireError


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'hive' has no attribute '{name}'")
    return getattr(importlib.import_module(_WHERE[name]), name)
