"""The process sandbox: no isolation, the agent runs as a plain subprocess in its work dir."""

from __future__ import annotations

from dataclasses import replace

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec


class ProcessSandbox:
    """No isolation: the agent's command runs as it is, in the agent's work dir."""

    name = "process"

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        paths.ensure()

    def wrap(self, spec: ProcessSpec, agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
        return replace(spec, cwd=spec.cwd or paths.work)
