"""The admin socket for hivectl: a unix socket (mode 0660, group configurable), one request
per frame, versioned like every hive socket.

Verbs are a table (``VERBS``): each takes the hive context, the connection and the request,
and completes the request exactly once. Lifecycle verbs are scoped to named agents; an empty
scope is an error, never "everything".
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from hive import __version__
from hive.io.frames import Connection, accept_connections, listen_unix, serve_connection
from hive.io.subscriptions import Feed, next_sub_id
from hive.wire import (
    ADMIN_MAX_FRAME_BYTES,
    OPERATOR,
    PROTOCOL_VERSION,
    Request,
    WireError,
    arg,
    id_arg,
    limit_arg,
    push,
    validate_agent_name,
    validate_recipient,
)

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.store import Reader

log = logging.getLogger(__name__)

Verb = Callable[["AdminSocket", Connection, Request], Any]
VERBS: dict[str, Verb] = {}


def verb(name: str) -> Callable[[Verb], Verb]:
    def register(fn: Verb) -> Verb:
        VERBS[name] = fn
        return fn

    return register


def scope_names(req: Request) -> list[str]:
    """The agents a lifecycle verb acts on: named explicitly, never 'all' by omission."""
    names = req.args.get("names")
    if isinstance(names, str):
        names = [names] if names else []
    if not isinstance(names, list) or not names:
        raise WireError(
            "empty_scope",
            f"'{req.op}' needs at least one agent name; an empty scope never means every agent",
        )
    return [validate_agent_name(n) for n in names]


class AdminSocket:
    def __init__(self, ctx: HiveContext, reader: Reader) -> None:
        self.ctx = ctx
        self.reader = reader
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
            await serve_connection(conn, self.handle, "admin socket")

        limit = self.ctx.config.max_admin_connections
        try:
            async with listener:
                await accept_connections(listener, "admin socket", limit, serve)
        finally:
            # A daemon that stops (or fails to start) leaves no socket that looks alive.
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def handle(self, conn: Connection, req: Request) -> None:
        fn = VERBS.get(req.op)
        if fn is None:
            raise WireError(
                "unknown_op", f"unknown verb '{req.op}' (known: {', '.join(sorted(VERBS))})"
            )
        result = fn(self, conn, req)
        if hasattr(result, "__await__"):
            await result

    # helpers for verbs -------------------------------------------------------------------

    def reply_cb(self, conn: Connection, req: Request) -> Callable[[Any], None]:
        return lambda result: conn.reply_threadsafe(req.id, result)

    def tell(self, target: str, message: object) -> None:
        if not self.ctx.refs.tell(target, message):
            raise WireError("unavailable", f"{target} is not running")

    def tell_agent(self, name: str, message: object) -> None:
        if not self.ctx.refs.tell(self.ctx.agent_ref_name(name), message):
            raise WireError("unknown_agent", f"no agent named '{name}'")

    def fan_out(
        self, conn: Connection, req: Request, names: list[str], make: Callable[[Any], object]
    ) -> None:
        """Send one message per named agent; reply once with every agent's result."""
        for name in names:
            if self.ctx.refs.get(self.ctx.agent_ref_name(name)) is None:
                raise WireError("unknown_agent", f"no agent named '{name}'")
        results: dict[str, Any] = {}

        def collect(name: str) -> Callable[[Any], None]:
            def done(result: Any) -> None:
                results[name] = (
                    {"error": result.to_wire()} if isinstance(result, WireError) else result
                )
                if len(results) == len(names):
                    conn.reply(req.id, {"agents": results})

            return lambda r: self.ctx.io.call_soon(done, r)

        for name in names:
            self.tell_agent(name, make(collect(name)))


# --- verbs --------------------------------------------------------------------------------


@verb("version")
def _version(s: AdminSocket, conn: Connection, req: Request) -> None:
    conn.reply(req.id, {"version": __version__, "protocol": PROTOCOL_VERSION})


@verb("list")
def _list(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.hub import GetSnapshot

    def done(snap: dict[str, Any]) -> None:
        rows = sorted(snap["items"].get("agent", []), key=lambda r: r["name"])
        conn.reply_threadsafe(req.id, {"agents": rows, "seq": snap["seq"]})

    s.tell("hub", GetSnapshot(done, frozenset({"agent"})))


@verb("status")
def _status(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.hub import GetSnapshot

    name = validate_agent_name(arg(req.args, "name", str))

    def done(snap: dict[str, Any]) -> None:
        for row in snap["items"].get("agent", []):
            if row["name"] == name:
                conn.reply_threadsafe(req.id, row)
                return
        conn.reply_threadsafe(req.id, WireError("unknown_agent", f"no agent named '{name}'"))

    s.tell("hub", GetSnapshot(done, frozenset({"agent"})))


@verb("subscribe")
def _subscribe(s: AdminSocket, conn: Connection, req: Request) -> None:
    """Push every state change of the given kinds on this connection, after a snapshot.

    A reader that falls behind gets a 'gap' push and should call 'list' again."""
    from hive.actors.hub import Subscribe, Unsubscribe

    kinds_arg = req.args.get("kinds")
    kinds = frozenset(kinds_arg) if isinstance(kinds_arg, list) and kinds_arg else None
    limit = int(arg(req.args, "backlog", int, 1000))
    feed = Feed(
        s.ctx.io,
        sink=lambda update: conn.send_frame(push("state", update)),
        backlog=lambda: conn._out_send.statistics().current_buffer_used,
        limit=max(1, limit),
    )
    sub_id = next_sub_id()

    def snapshot(snap: dict[str, Any]) -> None:
        s.ctx.io.call_soon(conn.send_frame, push("snapshot", snap))

    conn.reply(req.id, {"subscribed": sub_id})
    s.tell("hub", Subscribe(sub_id, kinds, feed.deliver, snapshot))

    def closed() -> None:
        feed.closed = True
        s.ctx.refs.tell("hub", Unsubscribe(sub_id))

    conn.on_close.append(closed)


@verb("send")
def _send(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.bus import Send

    to = validate_recipient(arg(req.args, "to", str))
    body = arg(req.args, "body", str)
    s.tell("bus", Send(OPERATOR, to, body, reply=s.reply_cb(conn, req)))


@verb("kick")
def _kick(s: AdminSocket, conn: Connection, req: Request) -> None:
    from hive.actors.agent import Kick

    note = arg(req.args, "note", str, "")
    s.fan_out(conn, req, scope_names(req), lambda cb: Kick(note or None, cb))


def _control_verb(op: str) -> Verb:
    def run(s: AdminSocket, conn: Connection, req: Request) -> None:
        from hive.actors.agent import Control

        s.fan_out(conn, req, scope_names(req), lambda cb: Control(op, cb))

    return run


for _op in ("pause", "resume", "cancel", "reset"):
    VERBS[_op] = _control_verb(_op)


@verb("messages")
async def _messages(s: AdminSocket, conn: Connection, req: Request) -> None:
    agent = arg(req.args, "agent", str)
    if agent != OPERATOR:
        validate_agent_name(agent)
    limit = limit_arg(req.args, "limit", 100, 1000)
    rows = await s.reader.run(lambda q: q.messages(agent, limit))
    conn.reply(req.id, {"messages": rows})


@verb("turns")
async def _turns(s: AdminSocket, conn: Connection, req: Request) -> None:
    agent = validate_agent_name(arg(req.args, "agent", str))
    limit = limit_arg(req.args, "limit", 50, 1000)
    rows = await s.reader.run(lambda q: q.turns(agent, limit))
    conn.reply(req.id, {"turns": rows})


@verb("transcript")
async def _transcript(s: AdminSocket, conn: Connection, req: Request) -> None:
    turn_id = id_arg(req.args, "turn_id")
    rows = await s.reader.run(lambda q: q.turn_events(turn_id))
    conn.reply(req.id, {"events": rows})


@verb("login_info")
def _login_info(s: AdminSocket, conn: Connection, req: Request) -> None:
    """What `hivectl login NAME` needs to run the agent's login on the operator's terminal:
    where the hive keeps its state, and which CLI it runs."""
    cfg = s.ctx.config
    conn.reply(
        req.id,
        {
            "state_dir": str(cfg.state_dir),
            "run_dir": str(cfg.sockets_dir),
            "claude_bin": cfg.claude_bin,
            "agent_python": cfg.agent_python,
        },
    )


@verb("clear_mail")
def _clear_mail(s: AdminSocket, conn: Connection, req: Request) -> None:
    """Delete the operator's mail (all, from one sender, or below an id): the way to make
    room when agents hear ``mailbox_full``. Replies once the delete has committed."""
    from hive.actors.store import Write
    from hive.store.retention import MailCount, clear_operator_mail
    from hive.wire import SYSTEM

    sender: str | None = arg(req.args, "sender", str, None)
    if sender is not None and sender != SYSTEM:
        validate_agent_name(sender)
    before_id: int | None = arg(req.args, "before_id", int, None)
    if before_id is not None and not 0 <= before_id < 2**63:
        raise WireError("bad_request", "'before_id' must be a message id (0 to 2^63-1)")
    reply = s.reply_cb(conn, req)
    mailbox = s.ctx.operator_mailbox

    def done(gone: MailCount | None, error: BaseException | None) -> None:
        if gone is None:
            reply(WireError("store_failed", f"nothing was deleted: {error}"))
            return
        if mailbox is not None:
            mailbox.removed(gone)
        reply({"deleted": gone.total()[0]})

    s.tell("store", Write(lambda q: clear_operator_mail(q, sender, before_id), done))


@verb("events")
async def _events(s: AdminSocket, conn: Connection, req: Request) -> None:
    agent = req.args.get("agent")
    limit = limit_arg(req.args, "limit", 100, 1000)
    rows = await s.reader.run(lambda q: q.events(agent if isinstance(agent, str) else None, limit))
    conn.reply(req.id, {"events": rows})
