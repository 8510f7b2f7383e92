"""The sandbox interface: turn a ProcessSpec into one that runs inside the agent's sandbox."""

from __future__ import annotations

import os
from typing import Protocol

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec


class SandboxError(RuntimeError):
    """The sandbox cannot run on this host (say which tool is missing and how to get it)."""


def package_path(agent: AgentConfig, path: str) -> str:
    """``path`` with the bin/ of each of the agent's ``packages`` ahead of it: the PATH of
    every process in the agent's sandbox (each backend sets it for the sandboxed program).

    >>> package_path(AgentConfig("bob", packages=("/nix/store/abc-git",)), "/usr/bin")
    '/nix/store/abc-git/bin:/usr/bin'
    """
    bins = [os.path.join(p, "bin") for p in agent.packages]
    return os.pathsep.join([*bins, path]) if bins else path


class Sandbox(Protocol):
    """Where an agent's processes run: ``prepare`` its directories once, ``wrap`` each
    command. A backend is registered by name (``hive.plugins.SANDBOXES``); the process
    backend isolates nothing and only sets the working directory:

    >>> from pathlib import Path
    >>> from hive.config import AgentConfig
    >>> from hive.process import AgentPaths, ProcessSpec
    >>> from hive.sandboxes import get_sandbox
    >>> sandbox: Sandbox = get_sandbox("process")
    >>> paths = AgentPaths.for_agent("alice", Path("/srv/hive"), Path("/run/hive"))
    >>> wrapped = sandbox.wrap(ProcessSpec(argv=("true",)), AgentConfig(name="alice"), paths)
    >>> wrapped.argv, wrapped.cwd == paths.work
    (('true',), True)
    """

    name: str

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        """Create and chown what the agent needs before its first turn (idempotent)."""

    def wrap(self, spec: ProcessSpec, agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
        """Return the command that runs ``spec`` inside this agent's sandbox."""
        ...
