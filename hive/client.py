"""Clients for hive's unix sockets (agent sockets and the admin socket).

``SyncClient`` is a plain blocking client (scripted agents, hivectl); ``TrioClient``
pipelines many concurrent calls over one connection (benchmarks, tests).

For example, as agent alice (its socket is its identity)::

    with SyncClient("/run/hive/agents/alice.sock") as c:
        c.call("send", to="bob", body="hello")      # -> {'id': 17}
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hive.wire import ADMIN_MAX_FRAME_BYTES, FrameDecoder, WireError, encode_frame, request

if TYPE_CHECKING:
    import trio

# trio is imported only by TrioClient: a SyncClient user (hivectl, a scripted agent)
# starts without paying for it.


class HiveError(WireError):
    """An error reply from the daemon: ``code`` and ``message`` are the daemon's."""


class ConnectionLost(HiveError):
    """The socket to the daemon closed before the reply came."""

    def __init__(self, message: str = "connection to the hive daemon was lost") -> None:
        super().__init__("connection_lost", message)


def ack_ids(result: Any) -> list[int]:
    """The message ids a reply carried that the daemon waits to hear were received."""
    ids = result.get("ack_ids") if isinstance(result, dict) else None
    return list(ids) if ids else []


def _result(frame: dict[str, Any]) -> Any:
    if frame.get("ok"):
        return frame.get("result")
    err = frame.get("error") or {}
    raise HiveError(str(err.get("code", "error")), str(err.get("message", "unknown error")))


class SyncClient:
    """One blocking connection; one call at a time."""

    def __init__(self, path: str | Path, timeout: float | None = None) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise ConnectionLost(f"cannot connect to {self.path}: {exc.strerror}") from exc
        # Replies come from the daemon, up to the admin socket's frame size: a client that
        # read only 1 MiB frames could not read a large transcript it was sent.
        self._decoder = FrameDecoder(ADMIN_MAX_FRAME_BYTES)
        self._ids = itertools.count(1)
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send_raw(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read_frame(self) -> dict[str, Any]:
        while not self._pending:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionLost()
            for item in self._decoder.feed(data):
                if isinstance(item, WireError):
                    raise HiveError(item.code, item.message)
                self._pending.append(item)
        return self._pending.pop(0)

    def call(self, op: str, **args: Any) -> Any:
        """One request, its result. Messages a result carries are acknowledged before it
        is returned: once the caller has them, the daemon may count them delivered."""
        result = self.request(op, **args)
        self.ack(result)
        return result

    def ack(self, result: Any) -> bool:
        """Acknowledge the messages ``result`` carried; False if that did not get through
        (then they come again: a duplicate, never a loss)."""
        ids = ack_ids(result)
        if not ids:
            return True
        try:
            self.request("ack", ids=ids)
        except (HiveError, OSError):
            return False
        return True

    def request(self, op: str, **args: Any) -> Any:
        """One request, its result, nothing acknowledged (see ``call``)."""
        req_id = next(self._ids)
        self._sock.sendall(encode_frame(request(req_id, op, **args)))
        while True:
            frame = self.read_frame()
            if frame.get("id") == req_id:
                return _result(frame)

    def stream(self, op: str, **args: Any) -> Iterator[dict[str, Any]]:
        """Call a subscribing op and yield its push frames until the connection ends."""
        self.call(op, **args)
        while True:
            try:
                yield self.read_frame()
            except ConnectionLost:
                return


class TrioClient:
    """Many concurrent calls over one connection; replies are matched by id."""

    def __init__(self, stream: trio.SocketStream) -> None:
        import trio

        self._stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._send_lock = trio.Lock()
        self.pushes_send, self.pushes = trio.open_memory_channel[dict[str, Any]](1000)
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: str | Path) -> AsyncIterator[TrioClient]:
        import trio

        try:
            stream = await trio.open_unix_socket(str(path))
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {path}: {exc.strerror}") from exc
        client = cls(stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._reader)
                try:
                    yield client
                finally:
                    # Closing the stream ends the reader by itself; cancelling the
                    # nursery here instead would swallow the body's exception.
                    await stream.aclose()
        except BaseExceptionGroup as group:
            # Callers catch HiveError, not a group holding one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _reader(self) -> None:
        import trio

        decoder = FrameDecoder(ADMIN_MAX_FRAME_BYTES)
        try:
            while True:
                data = await self._stream.receive_some(65536)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if isinstance(frame, Exception):
                        continue
                    if "push" in frame:
                        self.pushes_send.send_nowait(frame)
                        continue
                    chan = self._waiting.pop(frame.get("id", -1), None)
                    if chan is not None:
                        chan.send_nowait(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._closed = True
            for chan in self._waiting.values():
                chan.close()
            self._waiting.clear()
            # A subscriber iterating over pushes learns the connection ended.
            self.pushes_send.close()

    async def call(self, op: str, **args: Any) -> Any:
        """One request, its result; carried messages are acknowledged first (SyncClient)."""
        result = await self.request(op, **args)
        await self.ack(result)
        return result

    async def ack(self, result: Any) -> bool:
        """Acknowledge the messages ``result`` carried (see ``SyncClient.ack``)."""
        import trio

        ids = ack_ids(result)
        if not ids:
            return True
        try:
            await self.request("ack", ids=ids)
        except (HiveError, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def request(self, op: str, **args: Any) -> Any:
        """One request, its result, nothing acknowledged (see ``SyncClient.call``)."""
        import trio

        if self._closed:
            raise ConnectionLost()
        req_id = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[req_id] = send
        async with self._send_lock:
            await self._stream.send_all(encode_frame(request(req_id, op, **args)))
        try:
            frame = await recv.receive()
        except trio.EndOfChannel:
            raise ConnectionLost() from None
        return _result(frame)
