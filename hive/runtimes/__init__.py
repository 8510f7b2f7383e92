"""Runtimes: how an agent's turn is played. ``scripted`` for demos and tests, ``claude`` for
real agents; others come from installed packages (``hive.plugins.RUNTIMES``).

>>> get_runtime("scripted").name
'scripted'
"""

from __future__ import annotations

from hive.plugins import RUNTIMES
from hive.runtimes.base import (
    ExitClass,
    OneShotError,
    Runtime,
    RuntimeDefaults,
    TurnEvent,
    TurnInput,
    TurnOutcome,
)

__all__ = [
    "ExitClass",
    "OneShotError",
    "Runtime",
    "RuntimeDefaults",
    "TurnEvent",
    "TurnInput",
    "TurnOutcome",
    "get_runtime",
]

_cache: dict[str, Runtime] = {}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name`` in hive.toml, built once per process.

    Raises ``hive.plugins.UnknownPlugin`` (a ValueError) for a name no package registers."""
    rt = _cache.get(name)
    if rt is None:
        rt = _cache[name] = RUNTIMES.factory(name)()
    return rt
