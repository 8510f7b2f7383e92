"""What every dashboard handler reaches: the hive, the operator's credentials, open streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from quart import current_app

from hive.ui.auth import OperatorAuth
from hive.ui.sse import StreamRegistry

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

CONFIG_KEY = "HIVE_DASHBOARD"


@dataclass
class Dashboard:
    """What the dashboard's handlers share: the hive context, auth, streams and shutdown hooks."""

    ctx: HiveContext
    auth: OperatorAuth
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    # Called at shutdown: terminals and log followers register their close here.
    closers: set[Any] = field(default_factory=set)
    stopping: trio.Event = field(default_factory=trio.Event)  # set: hypercorn stops
    served: trio.Event = field(default_factory=trio.Event)  # set: hypercorn has stopped

    def close_all(self) -> None:
        self.stopping.set()
        self.streams.close_all()
        for close in list(self.closers):
            close()
        self.closers.clear()


def dashboard() -> Dashboard:
    board: Dashboard = current_app.config[CONFIG_KEY]
    return board
