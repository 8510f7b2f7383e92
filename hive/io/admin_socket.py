"""The admin socket for hivectl: a unix socket (mode 0660, group configurable), one request
per frame, versioned like every hive socket.

It holds no verbs of its own: a request is handed to the admin API
(``hive.control.admin_api.AdminApi``, the same one the dashboard calls) and its result or
WireError is the reply. Only ``subscribe`` lives here, because it pushes on this
connection for as long as it is open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

import trio

from hive.io.frames import Connection, accept_connections, listen_unix, serve_connection
from hive.io.subscriptions import Feed, next_sub_id
from hive.wire import ADMIN_MAX_FRAME_BYTES, Request, WireError, arg, push

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.control.admin_api import AdminApi

log = logging.getLogger(__name__)


class AdminSocket:
    """The admin socket's server: frames in, the admin API's results out."""

    def __init__(self, ctx: HiveContext, api: AdminApi) -> None:
        self.ctx = ctx
        self.api = api
        self.path = ctx.config.sockets_dir / "admin.sock"

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listener = await listen_unix(self.path, mode=0o660)
        group = self.ctx.config.admin_group
        if group:
            try:
                os.chown(self.path, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning("admin socket: cannot give it to group %s: %s", group, exc)
        task_status.started()

        async def serve(stream: trio.SocketStream) -> None:
            conn = Connection(
                stream,
                "admin",
                self.ctx.io,
                ADMIN_MAX_FRAME_BYTES,
                self.ctx.config.max_queued_reply_bytes,
            )
            uid = peer_uid(stream)

            async def handle(conn: Connection, req: Request) -> None:
                # Who asked, for the verbs that only root may do (hive.control.privilege).
                await self.handle(conn, dataclasses.replace(req, peer_uid=uid))

            await serve_connection(conn, handle, "admin socket")

        limit = self.ctx.config.max_admin_connections
        try:
            async with listener:
                await accept_connections(listener, "admin socket", limit, serve)
        finally:
            # A daemon that stops (or fails to start) leaves no socket that looks alive.
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def handle(self, conn: Connection, req: Request) -> None:
        if req.op == "subscribe":
            self.subscribe(conn, req)
            return
        # Each call runs in a task of its own: a stop that waits for a turn to end must not
        # hold up the connection's next request (the cancel that ends that turn, say).
        self.ctx.io.nursery.start_soon(self._answer, conn, req)

    async def _answer(self, conn: Connection, req: Request) -> None:
        try:
            result = await self.api.call(req)
        except WireError as exc:
            result = exc
        except Exception as exc:  # never into the daemon's nursery
            log.exception("admin socket: %s failed", req.op)
            result = WireError("internal", f"{req.op} failed: {exc}")
        conn.reply(req.id, result)

    def subscribe(self, conn: Connection, req: Request) -> None:
        """Push every state change of the given kinds on this connection, after a snapshot.

        A reader that falls behind gets a 'gap' push and should call 'list' again."""
        from hive.actors.hub import Subscribe, Unsubscribe

        kinds_arg = req.args.get("kinds")
        kinds = frozenset(kinds_arg) if isinstance(kinds_arg, list) and kinds_arg else None
        limit = int(arg(req.args, "backlog", int, 1000))
        io = self.ctx.io
        feed = Feed(
            io,
            sink=lambda update: conn.send_frame(push("state", update)),
            backlog=lambda: conn._out_send.statistics().current_buffer_used,
            limit=max(1, limit),
        )
        sub_id = next_sub_id()

        def snapshot(snap: dict[str, Any]) -> None:
            io.call_soon(conn.send_frame, push("snapshot", snap))

        conn.reply(req.id, {"subscribed": sub_id})
        if not self.ctx.refs.tell("hub", Subscribe(sub_id, kinds, feed.deliver, snapshot)):
            raise WireError("unavailable", "hub is not running")

        def closed() -> None:
            feed.closed = True
            self.ctx.refs.tell("hub", Unsubscribe(sub_id))

        conn.on_close.append(closed)


def peer_uid(stream: trio.SocketStream) -> int | None:
    """The uid of the process on the other end (SO_PEERCRED: set by the kernel at
    connect, not by the client); None if the kernel will not say."""
    try:
        creds = stream.socket.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)
