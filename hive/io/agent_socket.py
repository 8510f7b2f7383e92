"""Agent sockets: one unix socket per agent. Whoever connects to an agent's socket acts as
that agent (the socket is bind-mounted into that agent's sandbox only), so identity needs no
token and no agent can speak as another.

Ops: send, recv, ack, set_status, kick_agent (manager only), whoami. The control-plane
ops (ask_operator, spawn requests, ...) are routed to the Approvals actor where it exists.
``mcp`` switches the connection to MCP mode: the hive's MCP server session (hive.mcp_server,
hive.io.mcp_transport) runs over it as that agent, and its tools call these same ops in
process (``InProcessCaller``), on this connection.

A reply that carries messages (recv; an answered ask_operator) lists their ids in
``ack_ids``. They are delivered only once the client sends ``ack {ids}``: a reply that
never reaches a reader leaves them in the inbox. This module remembers, per connection,
what it handed over unacknowledged, and gives it back to the agent when the connection
closes or when the reply could not be sent as it was.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hive import hoptrace
from hive.io.frames import Connection, accept_connections, listen_unix, serve_connection
from hive.policy import check_manager_only
from hive.wire import MANAGER, Request, WireError, arg, validate_agent_name, validate_recipient

if TYPE_CHECKING:
    from hive.actors.base import HiveContext
    from hive.actors.bus import SendBatch
    from hive.io.mcp_pool import McpPool

log = logging.getLogger(__name__)

MAX_RECV_WAIT = 180.0
MAX_ACK_IDS = 10_000

# The control plane's ops (hive.control.agent_ops.op_table), given by the daemon:
# op -> handler(ctx, agent, conn, req). With the core ops, one table: ``AgentSockets._table``.
AgentOp = Callable[["HiveContext", str, "AgentConnection", Request], None]
Handler = Callable[["AgentConnection", Request], Awaitable[None] | None]


def _reply_to(conn: Connection, req: Request) -> Callable[[Any], None]:
    return lambda result: conn.reply_threadsafe(req.id, result)


class AgentConnection(Connection):
    """A connection to an agent socket, with what the socket keeps per connection: the sends
    read in the current chunk (they travel to the Bus as one batch), and the recvs parked
    for this client (withdrawn when it hangs up)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sends: list[tuple[int, str, str]] = []
        self.recv_waiters: set[int] = set()
        # Which connection holds a handed-over message (Recv/Ack/Release.holder): set by
        # the socket, one number per connection.
        self.holder = 0
        # In MCP mode, replies go to the MCP tools that made the calls, not to the stream.
        self.caller: InProcessCaller | None = None

    def reply(self, req_id: int, result: Any) -> bool:
        if self.caller is not None:
            return self.caller.answer(req_id, result)
        return super().reply(req_id, result)


class InProcessCaller:
    """The MCP tools' way to this socket's ops: a request handled as if it came in on
    ``conn`` (same identity, same per-connection state: what it holds unacknowledged, its
    parked recvs), its reply routed back here instead of onto the stream."""

    def __init__(self, sockets: AgentSockets, conn: AgentConnection) -> None:
        self.sockets = sockets
        self.conn = conn
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Any]] = {}

    async def call(self, op: str, **args: Any) -> Any:
        from hive.client import HiveError

        req_id = next(self._ids)
        send, receive = trio.open_memory_channel[Any](1)
        self._waiting[req_id] = send
        try:
            try:
                self.sockets.handle(self.conn, Request(req_id, op, args))
            except WireError as exc:
                raise HiveError(exc.code, exc.message) from None
            if self.conn.on_chunk_end is not None:
                self.conn.on_chunk_end()  # a send travels to the Bus now
            result = await receive.receive()
        finally:
            # A call abandoned (its MCP request cancelled, the session over) gets no reply:
            # ``answer`` then says so, and messages that reply carried go back.
            self._waiting.pop(req_id, None)
        if isinstance(result, WireError):
            raise HiveError(result.code, result.message)
        return result

    def answer(self, req_id: int, result: Any) -> bool:
        """A reply for call ``req_id`` (trio thread); False if nobody waits for it."""
        waiting = self._waiting.pop(req_id, None)
        if waiting is None:
            return False
        waiting.send_nowait(result)
        return True


class AgentSockets:
    """The agents' sockets: one unix socket per agent, its requests answered here."""

    def __init__(self, ctx: HiveContext, ops: Mapping[str, AgentOp]) -> None:
        self.ctx = ctx
        self.handlers = self._table(ops)
        self.scopes: dict[str, trio.CancelScope] = {}
        self.connections: dict[str, set[AgentConnection]] = {}
        self._waiter_ids = itertools.count(1)
        self._holder_ids = itertools.count(1)  # one per connection (Recv.holder)
        self._mcp_ready: trio.Event | None = None
        self.mcp_pool: McpPool | None = None  # made when an agent first attaches to it
        # Chunks of sends read from every connection in one pass of the loop: they go to
        # the Bus as one message (one tell, one wake-up of its thread), not one per
        # connection; 500 agents with one send each in flight otherwise cost 500 tells.
        self._outgoing: list[tuple[SendBatch, AgentConnection]] = []

    async def mcp_loaded(self) -> None:
        """The MCP SDK imported and the hive's servers built: once per process, in a worker
        thread (about 0.5 s that must not stall the loop), when the daemon starts with a
        claude agent (hive.daemon) or else when the first session starts."""
        if self._mcp_ready is None:
            self._mcp_ready = trio.Event()
            from hive import mcp_server

            try:
                await trio.to_thread.run_sync(mcp_server.preload)
            finally:
                self._mcp_ready.set()  # a failure shows again in the session that waits
        await self._mcp_ready.wait()

    async def _pool_attach(self, conn: AgentConnection, req: Request, name: str) -> None:
        """``mcp {server}``: attach this connection to the agent's pooled extra MCP server
        ``name``, which its stored config must declare, shared (hive.policy.mcp_pooled)."""
        from hive.config import AgentConfig
        from hive.control.records import agent_config
        from hive.io.mcp_pool import McpPool
        from hive.policy import mcp_pooled

        stored = await self.ctx.services.reader.run(lambda q: agent_config(q, conn.peer))
        agent = AgentConfig.from_dict(stored) if stored is not None else None
        found = [s for s in agent.mcp_servers if s.name == name] if agent is not None else []
        if agent is None or not found:
            raise WireError("unknown_server", f"no MCP server '{name}' in this agent's config")
        server = found[0]
        if not mcp_pooled(agent, server):
            raise WireError(
                "not_shared",
                f"MCP server '{name}' is not shared for this agent (shared = false, or a "
                "sandboxed agent): its claude starts it itself",
            )
        if self.mcp_pool is None:
            workdir = self.ctx.config.state_dir.resolve() / "mcp-pool"
            idle = self.ctx.config.mcp_pool_idle_seconds
            self.mcp_pool = McpPool(workdir, self.ctx.io.nursery, idle)
        pool = self.mcp_pool

        async def attach() -> None:
            await pool.attach(conn.peer, server, conn.stream)

        conn.takeover = attach
        conn.reply(req.id, {"mode": "mcp"})

    def socket_path(self, name: str) -> Path:
        path: Path = self.ctx.config.sockets_dir / "agents" / f"{name}.sock"
        return path

    def add_threadsafe(self, name: str) -> None:
        self.ctx.io.spawn(self.serve, name)

    def remove_threadsafe(self, name: str) -> None:
        self.ctx.io.call_soon(self._remove, name)

    def _remove(self, name: str) -> None:
        # No one new connects (the path goes); the open connections are closed by _close.
        self.socket_path(name).unlink(missing_ok=True)
        scope = self.scopes.pop(name, None)
        if scope is not None:
            self.ctx.io.spawn(self._close, scope, self.connections.pop(name, set()))

    async def _close(self, scope: trio.CancelScope, conns: set[AgentConnection]) -> None:
        # Each connection stops reading and writes what is queued for it first (for a
        # second at most): a reply queued before the removal (the answer to a destroyed
        # asker) reaches its reader. Only then does the socket's task end.
        open_now = list(conns)  # the set shrinks as they end
        for conn in open_now:
            conn.finish()
        for conn in open_now:
            await conn.ended.wait()
        scope.cancel()

    async def serve(self, name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if name in self.scopes:
            task_status.started()
            return
        path = self.socket_path(name)
        listener = await listen_unix(path, mode=0o660)
        with trio.CancelScope() as scope:
            self.scopes[name] = scope
            task_status.started()

            async def serve(stream: trio.SocketStream) -> None:
                cfg = self.ctx.config
                conn = AgentConnection(
                    stream, name, self.ctx.io, cfg.max_frame_bytes, cfg.max_queued_reply_bytes
                )
                if self.scopes.get(name) is not scope:
                    conn.finish()  # accepted while the socket is being removed
                conns = self.connections.setdefault(name, set())
                conns.add(conn)
                try:
                    await self._serve_conn(conn)
                finally:
                    conns.discard(conn)

            limit = self.ctx.config.max_agent_connections
            async with listener:
                await accept_connections(listener, f"agent socket {name}", limit, serve)

    async def _serve_conn(self, conn: AgentConnection) -> None:
        from hive.actors.agent import RecvTimeout
        from hive.actors.bus import SendBatch

        conn.holder = next(self._holder_ids)
        conn.on_close.append(lambda: self._release(conn, set(conn.awaiting_ack)))
        target = self.ctx.agent_ref_name(conn.peer)

        def withdraw() -> None:
            # A recv parked for a client that hangs up must not take the next message with
            # it: the agent forgets the waiter when the connection closes.
            for wid in conn.recv_waiters:
                self.ctx.refs.tell(target, RecvTimeout(wid))

        conn.on_close.append(withdraw)
        # Sends read in one chunk travel to the Bus as one batch (pipelining clients).
        sends = conn.sends

        def flush() -> None:
            if not sends:
                return
            batch = list(sends)
            sends.clear()
            self._queue_sends(SendBatch(conn.peer, batch, conn.reply_many_threadsafe), conn)

        conn.on_chunk_end = flush
        await serve_connection(
            conn, lambda _, req: self.handle(conn, req), f"agent socket {conn.peer}"
        )

    def _queue_sends(self, batch: SendBatch, conn: AgentConnection) -> None:
        """Hold a connection's chunk of sends until the loop has read what else is ready
        (trio thread): the first one queued schedules the flush after them."""
        self._outgoing.append((batch, conn))
        if len(self._outgoing) > 1:
            return
        try:
            self.ctx.io.token.run_sync_soon(self._flush_sends)
        except trio.RunFinishedError:
            self._flush_sends()

    def _flush_sends(self) -> None:
        """Every chunk of sends queued since the last flush, to the Bus in one message."""
        from hive.actors.bus import SendBatches

        pending, self._outgoing = self._outgoing, []
        if not pending:
            return
        if not self.ctx.refs.tell("bus", SendBatches(tuple(b for b, _ in pending))):
            err = WireError("unavailable", "the bus is restarting; try again")
            for batch, conn in pending:
                conn.reply_many([(req_id, err) for req_id, _, _ in batch.items])

    def reply_carrying(self, conn: AgentConnection, req_id: int, result: Any) -> None:
        """Send a reply that may carry messages (trio thread). Their ids wait for the
        client's ack; if the reply cannot go out as it is, they go back at once."""
        ids = result.get("ack_ids") if isinstance(result, dict) else None
        if not conn.reply(req_id, result) and ids:
            self._release(conn, set(ids))
        elif ids:
            conn.awaiting_ack.update(ids)

    def _release(self, conn: AgentConnection, ids: set[int]) -> None:
        from hive.actors.agent import Release

        conn.awaiting_ack.difference_update(ids)
        if ids:
            release = Release(tuple(sorted(ids)), conn.holder)
            self.ctx.refs.tell(self.ctx.agent_ref_name(conn.peer), release)

    def handle(self, conn: AgentConnection, req: Request) -> Awaitable[None] | None:
        check_manager_only(conn.peer, req.op)
        if req.op != "send" and self._outgoing:
            # Sends read earlier reach the Bus before any other request that follows them.
            self._flush_sends()
        handler = self.handlers.get(req.op)
        if handler is None:
            known = ", ".join(self.handlers)
            raise WireError("unknown_op", f"unknown op '{req.op}' (known: {known})")
        return handler(conn, req)

    def _table(self, control_ops: Mapping[str, AgentOp]) -> dict[str, Handler]:
        """Every op of an agent socket: the core ones here, the control plane's given."""
        ctx = self.ctx

        def control(op: AgentOp) -> Handler:
            return lambda conn, req: op(ctx, conn.peer, conn, req)

        core: dict[str, Handler] = {
            "send": self._send,
            "recv": self._recv,
            "ack": self._ack,
            "set_status": self._set_status,
            "kick_agent": self._kick_agent,
            "whoami": self._whoami,
            "mcp": self._mcp,
        }
        return {**core, **{name: control(op) for name, op in control_ops.items()}}

    def _tell(self, target: str, message: object) -> None:
        if not self.ctx.refs.tell(target, message):
            raise WireError("unavailable", f"{target} is not running right now; try again")

    def _send(self, conn: AgentConnection, req: Request) -> None:
        to = validate_recipient(arg(req.args, "to", str))
        body = arg(req.args, "body", str)
        conn.sends.append((req.id, to, body))  # to the Bus with the chunk's others

    def _recv(self, conn: AgentConnection, req: Request) -> None:
        from hive.actors.agent import Recv

        wait = arg(req.args, "wait_seconds", float, 0.0)
        if not 0 <= wait <= MAX_RECV_WAIT:
            raise WireError("bad_request", f"wait_seconds must be between 0 and {MAX_RECV_WAIT:g}")
        waiter_id = next(self._waiter_ids)

        def answered(result: Any) -> None:
            conn.recv_waiters.discard(waiter_id)  # nothing to withdraw any more
            if hoptrace.ENABLED and isinstance(result, dict):
                hoptrace.stamp("replied", result.get("ack_ids", ()))
            self.reply_carrying(conn, req.id, result)

        def carry(result: Any) -> None:
            self.ctx.io.call_soon(answered, result)

        recv = Recv(waiter_id, wait, carry, conn.holder)
        self._tell(self.ctx.agent_ref_name(conn.peer), recv)
        if wait > 0:
            conn.recv_waiters.add(waiter_id)

    def _ack(self, conn: AgentConnection, req: Request) -> None:
        from hive.actors.agent import Ack

        ids = arg(req.args, "ids", list)
        if len(ids) > MAX_ACK_IDS or not all(type(i) is int and 0 < i < 2**63 for i in ids):
            raise WireError(
                "bad_request", f"ids must be a list of at most {MAX_ACK_IDS} message ids"
            )
        conn.awaiting_ack.difference_update(ids)
        ack = Ack(tuple(ids), _reply_to(conn, req), conn.holder)
        self._tell(self.ctx.agent_ref_name(conn.peer), ack)

    def _set_status(self, conn: AgentConnection, req: Request) -> None:
        from hive.actors.agent import SetStatus

        text = arg(req.args, "text", str)
        self._tell(self.ctx.agent_ref_name(conn.peer), SetStatus(text, _reply_to(conn, req)))

    def _kick_agent(self, conn: AgentConnection, req: Request) -> None:
        from hive.actors.agent import Kick

        target = validate_agent_name(arg(req.args, "name", str))
        note = arg(req.args, "note", str, "")
        kick = Kick(note or None, _reply_to(conn, req))
        if not self.ctx.refs.tell(self.ctx.agent_ref_name(target), kick):
            raise WireError("unknown_agent", f"no running agent named '{target}'")

    def _whoami(self, conn: AgentConnection, req: Request) -> None:
        conn.reply(req.id, {"name": conn.peer, "manager": conn.peer == MANAGER})

    def _mcp(self, conn: AgentConnection, req: Request) -> Awaitable[None] | None:
        """Switch to MCP mode: answer, then serve the hive's MCP session (or attach the
        agent's pooled extra server ``server``) on this connection."""
        from hive.io.mcp_transport import serve_mcp

        server = arg(req.args, "server", str, "")
        if server:
            return self._pool_attach(conn, req, server)

        async def serve_hive() -> None:
            from hive.mcp_server import McpSession

            await self.mcp_loaded()
            conn.caller = InProcessCaller(self, conn)
            session = McpSession(conn.caller, conn.peer, conn.peer == MANAGER)
            await serve_mcp(conn.stream, session)

        conn.takeover = serve_hive
        conn.reply(req.id, {"mode": "mcp"})
        return None
