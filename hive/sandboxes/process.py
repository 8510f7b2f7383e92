"""The process sandbox: no isolation, the agent runs as a plain subprocess in its work dir."""

from __future__ import annotations

import os
from dataclasses import replace

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec
from hive.sandboxes.base import package_path


class ProcessSandbox:
    """No isolation: the agent's command runs as it is, in the agent's work dir."""

    name = "process"

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        paths.ensure()

    def wrap(self, spec: ProcessSpec, agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
        env = spec.env
        if agent.packages:
            env = {**env, "PATH": package_path(agent, env.get("PATH", os.defpath))}
        return replace(spec, cwd=spec.cwd or paths.work, env=env)
