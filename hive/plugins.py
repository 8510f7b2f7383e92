"""The one registry of runtimes and sandboxes: Python entry points.

A runtime (how a turn is played) and a sandbox (where it runs) are plugins, named in hive.toml
(``runtime = "claude"``, ``sandbox = "bwrap"``). Each is an entry point in its group, whose
object is a factory called with no arguments::

    [project.entry-points."hive.runtimes"]
    claude = "hive.runtimes.claude:ClaudeRuntime"

hive's own are declared in its pyproject.toml, and nowhere else; a third-party package adds one
by declaring an entry point in the same group. Names are read from the installed distributions
without importing any plugin, so hive.config can check a name without loading claude's code.

>>> "claude" in RUNTIMES and "process" in SANDBOXES
True
>>> ", ".join(RUNTIMES)
'claude, scripted'
>>> RUNTIMES.factory("docker")
Traceback (most recent call last):
  ...
hive.plugins.UnknownPlugin: unknown runtime 'docker': use one of claude, scripted
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

RUNTIME_GROUP = "hive.runtimes"
SANDBOX_GROUP = "hive.sandboxes"


class UnknownPlugin(ValueError):
    """No installed plugin has that name; the message lists the names there are."""


@lru_cache(maxsize=8)
def _scan(group: str, search_path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    """The group's entry points by name (the first found on ``sys.path`` wins). Cached per
    ``sys.path``: a path added later (a plugin installed into a running test) is scanned anew."""
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        seen.setdefault(ep.name, ep)
    return tuple(seen[name] for name in sorted(seen))


class Registry:
    """The plugins of one kind (``runtime`` or ``sandbox``), found through one entry-point
    group.

    >>> Registry("hive.no-such-group", "widget").names()
    ()
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind

    def _entries(self) -> tuple[EntryPoint, ...]:
        return _scan(self.group, tuple(sys.path))

    def names(self) -> tuple[str, ...]:
        """Every installed name, sorted (installers do not keep the declared order)."""
        return tuple(ep.name for ep in self._entries())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        """The names, so that a registry reads like the tuple of them it replaced."""
        return iter(self.names())

    def factory(self, name: str) -> Callable[[], Any]:
        """What builds the plugin called ``name`` (its module is imported now, not before).

        Raises UnknownPlugin for a name no installed package declares."""
        for ep in self._entries():
            if ep.name == name:
                loaded = ep.load()
                if not callable(loaded):
                    raise TypeError(f"{self.kind} plugin '{name}' ({ep.value}) is not callable")
                return loaded  # type: ignore[no-any-return]
        raise UnknownPlugin(f"unknown {self.kind} '{name}': use one of {', '.join(self.names())}")


RUNTIMES = Registry(RUNTIME_GROUP, "runtime")
SANDBOXES = Registry(SANDBOX_GROUP, "sandbox backend")

__all__ = ["RUNTIMES", "RUNTIME_GROUP", "SANDBOXES", "SANDBOX_GROUP", "Registry", "UnknownPlugin"]
