"""Runtimes: how an agent's turn is played. ``scripted`` for demos and tests, ``claude`` for
real agents."""

from __future__ import annotations

from hive.runtimes.base import ExitClass, Runtime, TurnEvent, TurnInput, TurnOutcome

__all__ = ["ExitClass", "Runtime", "TurnEvent", "TurnInput", "TurnOutcome", "get_runtime"]

_cache: dict[str, Runtime] = {}


def get_runtime(name: str) -> Runtime:
    rt = _cache.get(name)
    if rt is not None:
        return rt
    if name == "scripted":
        from hive.runtimes.scripted import ScriptedRuntime

        rt = ScriptedRuntime()
    elif name == "claude":
        from hive.runtimes.claude import ClaudeRuntime

        rt = ClaudeRuntime()
    else:
        raise ValueError(f"unknown runtime '{name}' (known: scripted, claude)")
    _cache[name] = rt
    return rt
