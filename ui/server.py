"""Serving the dashboard inside hive-supervisor: hypercorn's trio worker on the daemon's own
trio loop, started by hive.daemon.run_hive when ``[hive] dashboard`` is true.

The listening socket is bound here, not by hypercorn: with SO_REUSEADDR (a restarted
daemon rebinds at once despite TIME_WAIT), retried for a few seconds (the previous process
may still be exiting), and then a clear error that stops the daemon — a port held by
someone else is a configuration problem, never a reason to probe for another port.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import trio

from hive import logthrottle

if TYPE_CHECKING:
    from hypercorn.config import Config

    from hive.actors.base import HiveContext
    from hive.ui.context import Dashboard

log = logging.getLogger(__name__)

BIND_ATTEMPTS = 10
BIND_RETRY_SECONDS = 0.5
GRACEFUL_SECONDS = 3.0

_running: list[Dashboard] = []  # the dashboards being served (one per hive in a process)
# Sockets bound before the daemon started (hive-supervisor checks the port first).
_prebound: dict[tuple[str, int], socket.socket] = {}


# hypercorn accepts through trio.serve_listeners, which, out of fds, logs an error with a
# traceback and retries every 0.1 s: some 90 lines a second into the journal for as long as
# it lasts. One line this often says the same (hive.logthrottle).
ACCEPT_ERROR_EVERY = 60.0
ACCEPT_LOGGER = "trio.serve_listeners"


class DashboardBindError(RuntimeError):
    """The dashboard's address is taken or not ours to bind."""


def bind_socket(
    host: str, port: int, attempts: int = BIND_ATTEMPTS, delay: float = BIND_RETRY_SECONDS
) -> socket.socket:
    """A listening TCP socket on host:port, with SO_REUSEADDR and a bounded retry."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for attempt in range(attempts):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
            if attempt + 1 < attempts:
                time.sleep(delay)
    what = last.strerror if last is not None else "unknown error"
    hint = (
        "another program (or another hive) is listening there; stop it, or choose another "
        "port with [hive] dashboard_port / --dashboard-port, or turn the dashboard off "
        "with --no-dashboard"
        if last is not None and last.errno == errno.EADDRINUSE
        else "check [hive] dashboard_host"
    )
    raise DashboardBindError(f"dashboard: cannot listen on {host}:{port}: {what}; {hint}")


def prebind(host: str, port: int) -> None:
    """Bind the dashboard's port now, before any other socket of the daemon opens: a
    port someone else holds stops the start before hivectl could reach a daemon that is
    about to exit. The dashboard, once started, serves on this very socket."""
    _prebound[(host, port)] = bind_socket(host, port)


def hypercorn_config(sock: socket.socket) -> Config:
    from hypercorn.config import Config

    config = Config()
    # hypercorn adopts the socket we bound (and closes it when it stops).
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = GRACEFUL_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hive.ui.http")
    config.keep_alive_timeout = 75
    config.websocket_ping_interval = 20
    return config


async def start_dashboard(ctx: HiveContext, nursery: trio.Nursery) -> None:
    """Serve the dashboard (run_hive calls this at start-up) until the daemon shuts down."""
    cfg = ctx.config
    if not cfg.dashboard:
        return
    # Quart and hypercorn load only when the dashboard is on (a --no-dashboard daemon,
    # and every test hive, start without them).
    from hypercorn.trio import serve

    from hive.ui.app import create_app
    from hive.ui.auth import OperatorAuth
    from hive.ui.context import Dashboard

    auth = OperatorAuth.load_or_create(cfg.state_dir)
    board = Dashboard(ctx, auth)
    app = create_app(board)
    sock = _prebound.pop((cfg.dashboard_host, cfg.dashboard_port), None)
    if sock is None:
        # Binding sleeps between retries; keep that off the trio thread.
        try:
            sock = await trio.to_thread.run_sync(
                bind_socket, cfg.dashboard_host, cfg.dashboard_port
            )
        except DashboardBindError as exc:
            log.critical("%s", exc)
            raise
    host, port = sock.getsockname()[:2]
    config = hypercorn_config(sock)
    logthrottle.throttle(ACCEPT_LOGGER, ACCEPT_ERROR_EVERY)

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve(app, config, shutdown_trigger=board.stopping.wait, task_status=task_status)
        finally:
            board.served.set()
            if board in _running:
                _running.remove(board)

    _running.append(board)
    await nursery.start(run)
    log.info("dashboard on http://%s:%s/ (operator token in %s)", host, port, auth.path)


async def stop_dashboard(ctx: HiveContext) -> None:
    """At shutdown, before the actors stop: end the live streams and terminals first, so hypercorn's
    graceful stop has nothing left to wait for, then let it stop."""
    for board in list(_running):
        if board.ctx is not ctx:
            continue
        board.close_all()
        with trio.move_on_after(GRACEFUL_SECONDS + 1):
            await board.served.wait()
