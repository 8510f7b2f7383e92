"""Item 11 (issue 9): connections the daemon cannot afford are refused or wait; the daemon
lives. Real supervisor, real sockets, a real RLIMIT_NOFILE."""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import pytest

from hive.wire import FrameDecoder, encode_frame, request
from tests.hive_harness import RunningHive, wait_until

CAPPED = """
[hive]
max_agent_connections = 4
max_admin_connections = 6

[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""


def connect(path: Path, timeout: float = 30) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame, or None at EOF."""
    decoder = FrameDecoder(16 << 20)
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        frames = decoder.feed(data)
        if frames:
            frame: dict[str, Any] = frames[0]
            return frame


def call(sock: socket.socket, op: str, **args: Any) -> dict[str, Any]:
    sock.sendall(encode_frame(request(1, op, **args)))
    frame = read_frame(sock)
    assert frame is not None, f"{op}: connection closed without an answer"
    return frame


def served(path: Path, op: str) -> bool:
    with closing(connect(path)) as sock:
        return bool(call(sock, op).get("ok"))


def open_served(path: Path, op: str) -> socket.socket | None:
    """A connection that was served ``op``, or None if it was refused."""
    sock = connect(path)
    if call(sock, op).get("ok"):
        return sock
    sock.close()
    return None


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[RunningHive]:
    hive = RunningHive.start(tmp_path / "hive", CAPPED)
    yield hive
    hive.terminate()


@pytest.mark.parametrize(
    ("socket_of", "cap", "op"), [("bob", 4, "whoami"), ("admin", 6, "version")]
)
def test_connections_past_the_cap_get_a_clear_error_and_the_socket_keeps_serving(
    capped: RunningHive, socket_of: str, cap: int, op: str
) -> None:
    path = capped.admin_path if socket_of == "admin" else capped.agent_socket(socket_of)
    with ExitStack() as held:
        # Each one served (and so counted) before the next; a place may still be taken for a
        # moment by a connection the harness has just closed.
        conns = [
            held.enter_context(closing(wait_until(lambda: open_served(path, op))))
            for _ in range(cap)
        ]
        with closing(connect(path)) as extra:
            refused = read_frame(extra)
            assert refused is not None and refused["ok"] is False
            assert refused["error"]["code"] == "too_many_connections"
            assert str(cap) in refused["error"]["message"]
            assert read_frame(extra) is None  # then closed
        conns[0].close()
        # The freed place is taken by the next client once the server saw the close.
        wait_until(lambda: served(path, op), what="a connection to be served again")
    capped.wait_until(lambda: served(capped.admin_path, "version"), what="the admin socket")


UNCAPPED = """
[hive]
max_agent_connections = 100000
max_admin_connections = 100000

[[agent]]
name = "manager"

[[agent]]
name = "bob"
"""

FD_LIMIT = 256


def test_running_out_of_fds_backs_off_and_the_daemon_lives(tmp_path: Path) -> None:
    """With caps above the fd limit, idle connections use up every fd: accept() fails with
    EMFILE, which used to end the daemon. Now it backs off, and serves again once the
    clients let go."""
    hive = RunningHive.start(tmp_path / "hive", UNCAPPED)
    try:
        resource.prlimit(hive.process.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        bob = hive.agent_socket("bob")
        with ExitStack() as held:
            # More than the daemon has fds for; the rest wait in the listen backlog.
            for _ in range(FD_LIMIT + 100):
                held.enter_context(closing(connect(bob)))
            hive.wait_until(
                lambda: "accept failed" in hive.log_path.read_text(errors="replace"),
                what="the agent socket to run out of fds",
            )
            assert hive.process.poll() is None
        hive.wait_until(lambda: served(bob, "whoami"), what="bob's socket to serve again")
        hive.wait_until(lambda: served(hive.admin_path, "version"), what="the admin socket")
    finally:
        hive.terminate()
