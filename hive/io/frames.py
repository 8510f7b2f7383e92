"""A msgpack-frame server over unix sockets, shared by the agent and admin sockets.

Each connection reads frames, hands each request to a handler, and writes replies in the
order they complete (requests may be pipelined; replies carry the request id). Replies can
come from any thread through ``Connection.reply_threadsafe``. Bad frames get an error
frame and the connection goes on; a frame cut by EOF is logged and the connection closed.
"""

from __future__ import annotations

import errno
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

# accept() failures that mean "out of resources right now" (fds, kernel memory): the
# listener waits and tries again instead of ending, since closing connections frees them.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF_FIRST = 0.01
ACCEPT_BACKOFF_MAX = 1.0
REFUSE_SECONDS = 1.0  # time a refused client gets to read its error frame
# Replies and pushes queued for one client that does not read them: past this many bytes
# (and more than one frame) the client is disconnected. Nothing acknowledged is lost: a
# request whose reply never left is, to its sender, unanswered.
DEFAULT_MAX_QUEUED_BYTES = 32 << 20


class Connection:
    """One client connection. ``peer`` names who is on the other end (agent name, 'admin')."""

    def __init__(
        self,
        stream: trio.SocketStream,
        peer: str,
        bridge: IoBridge,
        max_frame_bytes: int,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.bridge = bridge
        self.max_frame_bytes = max_frame_bytes
        self.max_queued_bytes = max_queued_bytes
        # Bounded by bytes, not items (see send_frame): the channel itself never blocks.
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](math.inf)
        self.queued_bytes = 0
        self.queued_frames = 0
        # Cancelled to drop a client that does not read its replies (set by the server).
        self.scope: trio.CancelScope | None = None
        self.dropped_reason = ""
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
        # Cancelled by ``finish``: stops reading requests but not writing replies.
        self.reader_scope: trio.CancelScope | None = None
        self.finishing = False
        self.ended = trio.Event()  # set once the connection is closed
        # Set by a handler that switches this connection to another protocol (the agent
        # socket's ``mcp`` op): once its request is answered, it gets the raw stream.
        self.takeover: Callable[[], Awaitable[None]] | None = None
        # Set when the reply queue closes (the connection ends or another protocol takes
        # the stream): from then on nothing may write to the stream directly.
        self.writer_closed = False

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
        if self.queued_frames and self.queued_bytes + len(data) > self.max_queued_bytes:
            self.drop(
                f"it does not read its replies ({self.queued_bytes} bytes queued, "
                f"limit {self.max_queued_bytes})"
            )
            return False
        if self.queued_frames == 0 and not self.writer_closed:
            data = self._write_now(data)
            if not data:
                return sent
        try:
            self._out_send.send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            return False
        self.queued_bytes += len(data)
        self.queued_frames += 1
        return sent

    def _write_now(self, data: bytes) -> bytes:
        """Write straight to the socket when nothing is queued before ``data`` (so the
        writer task is idle and order holds): a reply then costs no wake-up of that task.
        Returns what the kernel did not take, for the writer to send when it can."""
        try:
            written = os.write(self.stream.socket.fileno(), data)
        except (BlockingIOError, InterruptedError):
            return data
        except OSError:
            return data  # a broken socket: the writer finds out and closes the connection
        return data[written:]

    def drop(self, reason: str) -> None:
        """Disconnect this client now, without draining what is queued for it."""
        if self.closed:
            return
        self.closed = True
        self.dropped_reason = reason
        log.warning("%s connection dropped: %s", self.peer, reason)
        if self.scope is not None:
            self.scope.cancel()

    def finish(self) -> None:
        """Stop reading this client's requests and close, after what is queued for it has
        been written (for a second at most: see ``_serve``). Trio thread only. Unlike a
        cancel of the whole connection, a reply queued just before still reaches its reader."""
        self.finishing = True
        if self.reader_scope is not None:
            self.reader_scope.cancel()

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
                self.queued_bytes -= sum(map(len, chunks))
                self.queued_frames -= len(chunks)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True


Handler = Callable[[Connection, Request], Awaitable[None] | None]


async def serve_connection(conn: Connection, handler: Handler, label: str) -> None:
    """Serve one connection to its end. Nothing a client sends can raise out of here."""
    try:
        await _serve(conn, handler, label)
    except Exception:
        log.exception("%s: connection failed", label)
    finally:
        conn.ended.set()


async def _serve(conn: Connection, handler: Handler, label: str) -> None:
    async with trio.open_nursery() as nursery:
        conn.scope = nursery.cancel_scope
        nursery.start_soon(conn._writer)
        try:
            with trio.CancelScope() as conn.reader_scope:
                if conn.finishing:
                    conn.reader_scope.cancel()
                await _read_requests(conn, handler, label)
        finally:
            conn.closed = True
            for cb in conn.on_close:
                cb()
            # Let queued replies drain (the writer ends once the queue is empty), for a
            # second at most, then close.
            conn.writer_closed = True
            conn._out_send.close()
            # Shielded: when the socket itself is being shut (agent removed, daemon
            # stopping) the client must still see its connection close, not hang.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(0 if conn.dropped_reason else 1):
                    await conn.writer_done.wait()
                nursery.cancel_scope.cancel()
                await conn.stream.aclose()


async def _read_requests(conn: Connection, handler: Handler, label: str) -> None:
    decoder = FrameDecoder(conn.max_frame_bytes)
    while True:
        try:
            data = await conn.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            err = decoder.eof()
            if err is not None:
                log.warning("%s: %s", label, err.message)
            return
        items = decoder.feed(data)
        extra = 0  # frames that came after a request that switched protocols
        for index, item in enumerate(items):
            if conn.takeover is not None:
                extra = len(items) - index
                break
            try:
                # Not a checkpoint when a slot is free: a yield per request would cost a
                # trip through the scheduler each (the read above already yields).
                conn.in_flight.acquire_nowait()
            except trio.WouldBlock:
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
        if conn.takeover is not None:
            extra += decoder.buffered()
            return await _hand_over(conn, extra)


async def _hand_over(conn: Connection, extra: int) -> None:
    """Give the stream to ``conn.takeover`` once every reply queued so far is written (the
    frame writer ends, so nothing else writes to the stream). A client must wait for the
    switching request's reply before it speaks the new protocol: anything it sent after that
    request in the same write is a protocol error, and the connection is closed."""
    takeover, conn.takeover = conn.takeover, None
    conn.writer_closed = True
    conn._out_send.close()
    await conn.writer_done.wait()
    if extra:
        log.warning("%s: data sent before the reply that switched protocols; closing",
                    conn.peer)  # fmt: skip
        return
    assert takeover is not None
    await takeover()


async def accept_connections(
    listener: trio.SocketListener,
    label: str,
    max_connections: int,
    serve: Callable[[trio.SocketStream], Awaitable[None]],
) -> None:
    """Accept connections on ``listener`` for ever, ``serve`` each in its own task.

    At most ``max_connections`` are served at once; one more gets a ``too_many_connections``
    error frame and is closed. When accept() fails for lack of fds or memory, the loop backs
    off (doubling up to ``ACCEPT_BACKOFF_MAX``) and tries again: the daemon lives on, and
    clients left waiting in the listen backlog are accepted once fds are free again.
    """
    open_now = 0
    refused = 0  # in the current episode of being full
    backoff = ACCEPT_BACKOFF_FIRST

    async def serve_counted(stream: trio.SocketStream) -> None:
        nonlocal open_now
        open_now += 1
        try:
            await serve(stream)
        finally:
            open_now -= 1

    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    raise
                if backoff == ACCEPT_BACKOFF_FIRST:  # once per episode, not per retry
                    log.warning("%s: accept failed (%s); backing off", label, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                continue
            backoff = ACCEPT_BACKOFF_FIRST
            if open_now >= max_connections:
                refused += 1
                if refused == 1:  # once per episode: a client retrying in a loop floods no log
                    log.warning("%s: refusing connections past the cap of %d", label,
                                max_connections)  # fmt: skip
                nursery.start_soon(_refuse, stream, max_connections)
            else:
                if refused:
                    log.warning("%s: %d connections refused past the cap", label, refused)
                    refused = 0
                nursery.start_soon(serve_counted, stream)


async def _refuse(stream: trio.SocketStream, max_connections: int) -> None:
    err = WireError(
        "too_many_connections",
        f"this socket already serves {max_connections} connections (the cap); "
        f"close one and connect again",
    )
    with trio.move_on_after(REFUSE_SECONDS):
        try:
            await stream.send_all(encode_frame(error_reply(0, err)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    with trio.CancelScope(shield=True):
        await stream.aclose()


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
