"""sd_notify: a supervisor run by systemd says READY=1 once it serves, then pings the
watchdog while its loop and actor tree answer, and says STOPPING=1 on its way out.

A real AF_UNIX datagram socket stands in for systemd's; every wait is a socket timeout.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hive.client import HiveError
from tests.hive_harness import RunningHive

CONFIG = """
[[agent]]
name = "manager"

[[agent]]
name = "alice"
"""

WATCHDOG_USEC = 400_000  # a round of pings every 0.1 s (a quarter of the watchdog period)
RECV_TIMEOUT = 30.0
STOPPING = "STOPPING=1\nSTATUS=stopping: cancelling turns"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "unix socket paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


def receive(sock: socket.socket) -> str:
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        raise AssertionError(f"no sd_notify datagram within {RECV_TIMEOUT:g}s") from None


def test_ready_then_watchdog_pings_then_stopping(
    make_hive: Callable[..., RunningHive], notify_socket: socket.socket
) -> None:
    hive = make_hive(
        CONFIG,
        env={
            "NOTIFY_SOCKET": notify_socket.getsockname(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        },
    )
    assert receive(notify_socket) == (
        "READY=1\nSTATUS=serving 2 agents; admin socket " + str(hive.admin_path)
    )
    # READY=1 means serving: the agents are up and answer at once.
    assert hive.status("alice")["name"] == "alice"
    pings = [receive(notify_socket) for _ in range(5)]
    assert pings == ["WATCHDOG=1"] * 5

    assert hive.terminate() == 0
    rest = []
    while STOPPING not in rest:
        rest.append(receive(notify_socket))
    assert set(rest) <= {"WATCHDOG=1", STOPPING}


def test_without_watchdog_usec_there_is_ready_and_stopping_but_no_pings(
    make_hive: Callable[..., RunningHive], notify_socket: socket.socket
) -> None:
    hive = make_hive(CONFIG, env={"NOTIFY_SOCKET": notify_socket.getsockname()})
    assert receive(notify_socket).startswith("READY=1\n")
    assert hive.terminate() == 0
    # Everything the daemon said between READY and its exit is in the socket's queue.
    assert receive(notify_socket) == STOPPING
    notify_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        notify_socket.recv(4096)


def test_watchdog_pid_of_another_process_means_no_pings(
    make_hive: Callable[..., RunningHive], notify_socket: socket.socket
) -> None:
    # systemd sets WATCHDOG_PID to the process it watches; a child that inherited the
    # variables must not ping on its parent's behalf.
    hive = make_hive(
        CONFIG,
        env={
            "NOTIFY_SOCKET": notify_socket.getsockname(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "WATCHDOG_PID": "1",
        },
    )
    assert receive(notify_socket).startswith("READY=1\n")
    assert hive.terminate() == 0
    assert receive(notify_socket) == STOPPING
    notify_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        notify_socket.recv(4096)


def test_a_hung_actor_stops_the_watchdog_pings_until_it_answers_again(
    make_hive: Callable[..., RunningHive], notify_socket: socket.socket
) -> None:
    # The loop is fine and the Supervisor answers; only the Store's thread is stuck. The
    # pings must stop anyway: systemd restarts a daemon that cannot commit anything.
    hive = make_hive(
        CONFIG,
        env={
            "NOTIFY_SOCKET": notify_socket.getsockname(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "HIVE_FAULT_INJECTION": "1",
        },
    )
    assert receive(notify_socket).startswith("READY=1\n")
    assert receive(notify_socket) == "WATCHDOG=1"
    assert hive.admin("inject_fault", target="store", hang_seconds=3) == {
        "injected": "store",
        "hang_seconds": 3.0,
    }
    said = receive(notify_socket)
    while said == "WATCHDOG=1":  # pings sent before the Store took the hang
        said = receive(notify_socket)
    assert said == "STATUS=hung: store not answering"
    # Once the Store is back, so are the pings (the hang was shorter than a watchdog), and
    # the status says so again.
    assert receive(notify_socket) == (
        "WATCHDOG=1\nSTATUS=serving 2 agents; admin socket " + str(hive.admin_path)
    )
    assert "watchdog: store did not answer" in hive.log_path.read_text()
    assert hive.terminate() == 0


def test_a_hang_is_bounded_and_refused_without_the_test_flag(
    make_hive: Callable[..., RunningHive],
) -> None:
    hive = make_hive(CONFIG, env={"HIVE_FAULT_INJECTION": "1"})
    for bad in (-1, 601, float("nan")):
        with pytest.raises(HiveError) as err:
            hive.admin("inject_fault", target="store", hang_seconds=bad)
        assert err.value.code == "bad_request"
    plain = make_hive(CONFIG, name="plain")
    with pytest.raises(HiveError) as err:
        plain.admin("inject_fault", target="store", hang_seconds=1)
    assert err.value.code == "unknown_op"
