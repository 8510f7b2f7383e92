"""Fault injection for tests of supervision: an admin verb that makes one actor raise.

Loaded only when the daemon starts with HIVE_FAULT_INJECTION=1; a production daemon has no
such verb.
"""

from __future__ import annotations

from hive.actors.base import InjectFault
from hive.io.admin_socket import AdminSocket, verb
from hive.io.frames import Connection
from hive.wire import Request, arg


@verb("inject_fault")
def _inject_fault(s: AdminSocket, conn: Connection, req: Request) -> None:
    """Make the named actor ('store', 'bus', 'hub', 'agent:NAME') raise in its thread."""
    target = arg(req.args, "target", str)
    s.tell(target, InjectFault())
    conn.reply(req.id, {"injected": target})
