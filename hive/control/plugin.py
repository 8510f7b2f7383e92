"""Plugs the control plane into the daemon (listed in hive.extensions.MODULES): the
Approvals actor under the Supervisor, its agent-socket ops and its admin verbs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hive.actors.supervisor import EXTRA_CHILDREN, ChildSpec
from hive.control import admin_verbs, agent_ops

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

__all__ = ["admin_verbs", "agent_ops", "approvals_child"]


def approvals_child(ctx: HiveContext) -> ChildSpec:
    from hive.actors.approvals import ApprovalsActor

    return ChildSpec("approvals", lambda: ApprovalsActor.start(ctx))


if approvals_child not in EXTRA_CHILDREN:
    EXTRA_CHILDREN.append(approvals_child)
