"""A msgpack-frame server over unix sockets, shared by the agent and admin sockets.

Each connection reads frames, hands each request to a handler, and writes replies in the
order they complete (requests may be pipelined; replies carry the request id). Replies can
come from any thread through ``Connection.reply_threadsafe``. Bad frames get an error
frame and the connection goes on; a frame cut by EOF is logged and the connection closed.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from hive.io.bridge import IoBridge
from hive.wire import (
    FrameDecoder,
    FrameError,
    Request,
    WireError,
    encode_frame,
    error_reply,
    ok_reply,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4096  # per connection: reading stops until replies catch up


class Connection:
    """One client connection. ``peer`` names who is on the other end (agent name, 'admin')."""

    def __init__(
        self,
        stream: trio.SocketStream,
        peer: str,
        bridge: IoBridge,
        max_frame_bytes: int,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.bridge = bridge
        self.max_frame_bytes = max_frame_bytes
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](math.inf)
        self.in_flight = trio.Semaphore(MAX_IN_FLIGHT)
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        # Message ids handed to this client in replies it has not acknowledged yet
        # (agent sockets: see hive.io.agent_socket).
        self.awaiting_ack: set[int] = set()
        self.writer_done = trio.Event()
        # Called after each chunk of frames read at once has been handled: lets a
        # handler pass a whole chunk of pipelined requests on as one batch.
        self.on_chunk_end: Callable[[], None] | None = None

    # --- replies: from the trio thread or any other --------------------------------

    def send_frame(self, frame: dict[str, Any]) -> bool:
        """Queue a frame (trio thread only). False if it was not queued as it is: the
        connection is closed, or the frame was too large and an error went instead."""
        if self.closed:
            return False
        sent = True
        try:
            data = encode_frame(frame, self.max_frame_bytes)
        except WireError as exc:
            data = encode_frame(error_reply(frame.get("id"), exc))
            sent = False
        try:
            self._out_send.send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            return False
        return sent

    def reply(self, req_id: int, result: Any) -> bool:
        """Complete a request (trio thread only). ``result`` may be a WireError. False if
        the result did not go out as it is (see ``send_frame``)."""
        if isinstance(result, WireError):
            sent = self.send_frame(error_reply(req_id, result))
        else:
            sent = self.send_frame(ok_reply(req_id, result))
        self.in_flight.release()
        return sent

    def reply_many(self, results: list[tuple[int, Any]]) -> None:
        for req_id, result in results:
            self.reply(req_id, result)

    def reply_threadsafe(self, req_id: int, result: Any) -> None:
        self.bridge.call_soon(self.reply, req_id, result)

    def reply_many_threadsafe(self, results: list[tuple[int, Any]]) -> None:
        self.bridge.call_soon(self.reply_many, results)

    async def _writer(self) -> None:
        try:
            await self._write_all()
        finally:
            self.writer_done.set()

    async def _write_all(self) -> None:
        try:
            async for data in self._out_recv:
                chunks = [data]
                # Coalesce whatever else is ready into one write: many small replies
                # otherwise cost one syscall each.
                while len(chunks) < 512:
                    try:
                        chunks.append(self._out_recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        # EndOfChannel: the reader closed the queue at the client's EOF;
                        # write what is here, and the loop ends at its next receive.
                        break
                await self.stream.send_all(b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True


Handler = Callable[[Connection, Request], Awaitable[None] | None]


async def serve_connection(conn: Connection, handler: Handler, label: str) -> None:
    """Serve one connection to its end. Nothing a client sends can raise out of here."""
    try:
        await _serve(conn, handler, label)
    except Exception:
        log.exception("%s: connection failed", label)


async def _serve(conn: Connection, handler: Handler, label: str) -> None:
    decoder = FrameDecoder(conn.max_frame_bytes)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn._writer)
        try:
            while True:
                try:
                    data = await conn.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    err = decoder.eof()
                    if err is not None:
                        log.warning("%s: %s", label, err.message)
                    break
                for item in decoder.feed(data):
                    await conn.in_flight.acquire()
                    if isinstance(item, FrameError):
                        log.info("%s: %s", label, item.message)
                        conn.reply(0, item)
                        continue
                    try:
                        req = Request.from_frame(item)
                    except WireError as exc:
                        rid = item.get("id") if isinstance(item.get("id"), int) else 0
                        conn.reply(rid, exc)
                        continue
                    try:
                        res = handler(conn, req)
                        if res is not None:
                            await res
                    except WireError as exc:
                        conn.reply(req.id, exc)
                    except Exception as exc:  # never let one request kill the server
                        log.exception("%s: %s failed", label, req.op)
                        conn.reply(req.id, WireError("internal", f"{req.op} failed: {exc}"))
                if conn.on_chunk_end is not None:
                    conn.on_chunk_end()
        finally:
            conn.closed = True
            for cb in conn.on_close:
                cb()
            # Let queued replies drain (the writer ends once the queue is empty), for a
            # second at most, then close.
            conn._out_send.close()
            # Shielded: when the socket itself is being shut (agent removed, daemon
            # stopping) the client must still see its connection close, not hang.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await conn.writer_done.wait()
                nursery.cancel_scope.cancel()
                await conn.stream.aclose()


async def listen_unix(path: Path, mode: int = 0o600) -> trio.SocketListener:
    """Listen on a unix socket at ``path`` with ``mode``, replacing a stale socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    # chmod before listen(): nobody can connect in between with the umask's mode.
    os.chmod(path, mode)
    sock.listen(512)
    return trio.SocketListener(sock)
