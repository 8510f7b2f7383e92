"""The IO side's services, created on the trio thread and reachable from actors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hive.io.bridge import IoBridge
from hive.io.turns import TurnRunner
from hive.notes import NotesCompactor
from hive.store import Reader

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.control.admin_api import AdminApi
    from hive.io.admin_socket import AdminSocket
    from hive.io.agent_socket import AgentOp, AgentSockets


class IoServices:
    """The trio thread's services (bridge, reader, turns, sockets), as the actors reach them."""

    def __init__(self, bridge: IoBridge, reader: Reader) -> None:
        self.bridge = bridge
        self.reader = reader
        self.turns = TurnRunner(bridge)
        self.notes = NotesCompactor(bridge, self.turns)  # reports through the runner
        self.agent_sockets: AgentSockets
        self.admin: AdminSocket

    def attach(
        self, ctx: HiveContext, admin_api: AdminApi, agent_ops: Mapping[str, AgentOp]
    ) -> None:
        """Create the sockets' servers, given the verbs and ops the daemon composed."""
        from hive.io.admin_socket import AdminSocket
        from hive.io.agent_socket import AgentSockets

        self.turns.attach(ctx)
        self.agent_sockets = AgentSockets(ctx, agent_ops)
        self.admin = AdminSocket(ctx, admin_api)
