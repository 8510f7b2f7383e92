"""MCP over one stream: the hive's MCP server session on an agent-socket connection.

After the relay's ``mcp`` request (hive.io.agent_socket) the connection carries
newline-delimited JSON-RPC, exactly what the MCP stdio transport carries, so the relay only
copies bytes. Here each line becomes a message for the SDK's server loop and each message it
answers becomes a line. Two things are hive's own:

- The JSON-RPC id of each incoming request is put in a context variable before the message
  is handed on (``hive.mcp_server.REQUEST_ID``); the SDK runs the handler in the context the
  message was sent with, so a tool knows which request it answers.
- Message ids a tool's result carries (a recv, an answered question) are acknowledged only
  after the answer holding them has been written to the relay; an answer that is an error or
  never written leaves them unacknowledged (back in the inbox when the connection closes).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream
    from mcp.shared.message import SessionMessage

    from hive.mcp_server import McpSession

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8 << 20  # one JSON-RPC message; a tool's arguments are far below this
PARSE_ERROR = -32700  # JSON-RPC's code for a message that cannot be read


async def serve_mcp(stream: trio.abc.Stream, session: McpSession) -> None:
    """Run ``session`` (the hive's MCP server for its agent) over ``stream`` until EOF."""
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    from hive import mcp_server

    server = mcp_server.server_for(session.manager)
    options = server._lowlevel_server.create_initialization_options()
    to_server, server_reads = create_context_streams[SessionMessage | Exception](0)
    server_writes, from_server = create_context_streams[SessionMessage](0)
    mcp_server.SESSION.set(session)  # the reader's messages carry it to the tools
    out = _Writer(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_lines, stream, to_server, out)
        nursery.start_soon(_write_lines, out, from_server, session, nursery.cancel_scope)
        await server._lowlevel_server.run(server_reads, server_writes, options)


class _Writer:
    """Lines to the relay: the server's answers, and the reader's answers to unparsable
    lines (the SDK does not answer those), one write at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.lock = trio.Lock()

    async def line(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data + b"\n")


async def _read_lines(
    stream: trio.abc.Stream, out: ContextSendStream[Any], writer: _Writer
) -> None:
    buffer = b""
    async with out:
        while True:
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await _hand_on(line, out, writer)
            if len(buffer) > MAX_LINE_BYTES:
                log.warning("MCP connection: a line over %d bytes; closing", MAX_LINE_BYTES)
                return
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buffer += data


async def _hand_on(line: bytes, out: ContextSendStream[Any], writer: _Writer) -> None:
    import mcp_types
    from mcp.shared.message import SessionMessage

    from hive.mcp_server import REQUEST_ID

    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as exc:  # pydantic's ValidationError, or a JSON error inside it
        error = {"code": PARSE_ERROR, "message": f"not a JSON-RPC message: {_first_line(exc)}"}
        answer = {"jsonrpc": "2.0", "id": None, "error": error}
        try:
            await writer.line(json.dumps(answer).encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the writer sees the same and ends the session
        return
    REQUEST_ID.set(message.id if isinstance(message, mcp_types.JSONRPCRequest) else None)
    await out.send(SessionMessage(message))


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


async def _write_lines(
    writer: _Writer,
    messages: ContextReceiveStream[SessionMessage],
    session: McpSession,
    scope: trio.CancelScope,
) -> None:
    import mcp_types

    async with messages, trio.open_nursery() as acks:
        async for item in messages:
            message = item.message
            data = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
            try:
                await writer.line(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                scope.cancel()  # the relay is gone: the session is over
                return
            if isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
                ids = session.held.pop(_key(message.id), None)
                if ids and _succeeded(message):
                    acks.start_soon(_ack, session, ids)


def _key(request_id: object) -> str:
    from hive.mcp_server import request_key

    return request_key(request_id)


def _succeeded(message: Any) -> bool:
    """A tool's answer the model reads as a result, not an error."""
    result = getattr(message, "result", None)
    return isinstance(result, dict) and not result.get("isError")


async def _ack(session: McpSession, ids: list[int]) -> None:
    from hive.client import HiveError

    try:
        await session.caller.call("ack", ids=ids)
    except HiveError as exc:  # not acknowledged: they come again (a duplicate, no loss)
        log.info("%s: ack of %d messages failed: %s", session.name, len(ids), exc.message)
