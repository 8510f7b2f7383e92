"""IO the Approvals actor hands to the trio thread: creating draft repos, preparing a new
agent's directories. Each task reports back to the actor with a message and never raises
into the daemon's nursery (that would stop the daemon)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from hive.config import AgentConfig
from hive.control import gitrepo
from hive.control.spawn import agent_toml
from hive.process import AgentPaths
from hive.wire import WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

log = logging.getLogger(__name__)

# (sha, error): sha of the config commit ('' if none), error message or None
Report = Callable[[str, str | None], None]


def paths_of(ctx: HiveContext, name: str) -> AgentPaths:
    return AgentPaths.for_agent(name, ctx.config.state_dir, ctx.config.sockets_dir)


async def make_draft(ctx: HiveContext, name: str, toml_text: str, report: Report) -> None:
    """A draft: the agent's directories and a config repo with agent.toml committed."""
    paths = paths_of(ctx, name)
    try:
        await trio.to_thread.run_sync(paths.ensure)
        sha = await gitrepo.commit_config(paths.config, toml_text, f"draft of agent {name}")
    except WireError as exc:
        report("", exc.message)
    except Exception as exc:
        log.exception("draft %s could not be created", name)
        report("", f"could not create the draft's directories: {exc}")
    else:
        report(sha, None)


async def prepare_agent(
    ctx: HiveContext, cfg: AgentConfig, make_repo: bool, report: Report
) -> None:
    """Directories for a new agent and, for a one-shot spawn, a config repo holding its
    config, so later changes can go through request_apply_commit like any other."""
    paths = paths_of(ctx, cfg.name)
    try:
        await trio.to_thread.run_sync(paths.ensure)
    except Exception as exc:
        log.exception("directories of %s could not be created", cfg.name)
        report("", f"could not create the agent's directories: {exc}")
        return
    sha = ""
    if make_repo:
        try:
            sha = await gitrepo.commit_config(
                paths.config, agent_toml(cfg), f"config of agent {cfg.name} at spawn"
            )
        except Exception as exc:  # the agent can run without one: log, go on
            log.warning("config repo of %s not created: %s", cfg.name, exc)
    report(sha, None)
