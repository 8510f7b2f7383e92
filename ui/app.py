"""The dashboard's QuartTrio app: pages, login, the auth gate, vendored browser libraries,
the terminal websocket, and the JSON API blueprint (described by hive.ui.openapi).

    app = create_app(Dashboard(ctx, OperatorAuth.load_or_create(state_dir)))
    await hypercorn.trio.serve(app, config)     # see hive.ui.server
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import trio
from quart import (
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    websocket,
)
from quart_trio import QuartTrio

from hive import __version__
from hive.config import AgentConfig
from hive.control.privilege import NEEDS_ROOT, terminal_refusal
from hive.process import AgentPaths
from hive.ui.api import api
from hive.ui.auth import COOKIE, CSRF_HEADER, safe_next_path
from hive.ui.context import CONFIG_KEY, Dashboard, dashboard
from hive.ui.openapi import openapi_document
from hive.ui.terminal import TerminalSession
from hive.wire import WireError, validate_agent_name

UI_DIR = Path(__file__).resolve().parent
# ui/node_modules in a source tree (`npm install` in ui/); packagers point this elsewhere.
NODE_MODULES = Path(os.environ.get("HIVE_UI_NODE_MODULES") or UI_DIR / "node_modules")
# The browser libraries the pages load, from ui/package.json's packages: path -> file.
VENDOR = {
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
}
PUBLIC_PATHS = ("/login", "/static/", "/vendor/", "/api/openapi.json", "/healthz")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
COOKIE_MAX_AGE = 365 * 86400


def create_app(board: Dashboard) -> QuartTrio:
    """The dashboard app for ``board``: the gate, the API blueprint and the routes below."""
    app = QuartTrio(
        __name__,
        static_folder=str(UI_DIR / "static"),
        template_folder=str(UI_DIR / "templates"),
    )
    app.config[CONFIG_KEY] = board
    app.config["MAX_CONTENT_LENGTH"] = 2 << 20
    app.register_blueprint(api)
    app.before_request(_gate)
    app.before_websocket(_gate_websocket)
    app.after_request(_security_headers)
    app.after_request(_compress)
    _add_public_routes(app)
    _add_login_routes(app)
    _add_pages(app)
    _add_terminal(app)
    return app


def _add_public_routes(app: QuartTrio) -> None:
    """What answers without a login: the health check, the API document, vendored libraries."""

    @app.get("/healthz")
    async def healthz() -> Response:
        return jsonify({"ok": True, "version": __version__})

    @app.get("/api/openapi.json")
    async def openapi() -> Response:
        """This document"""
        return jsonify(openapi_document(app))

    @app.get("/vendor/<name>")
    async def vendor(name: str) -> Response:
        rel = VENDOR.get(name)
        if rel is None or not (NODE_MODULES / rel).is_file():
            abort(404)
        path = Path(rel)
        response = await send_from_directory(NODE_MODULES / path.parent, path.name)
        return response


def _add_login_routes(app: QuartTrio) -> None:
    """The login form, the token check that sets the cookie, and logout."""

    @app.get("/login")
    async def login_form() -> str:
        # Where another tab's login sends this one back (checked as the POST checks it).
        back = safe_next_path(request.args.get("next", "/"))
        return await render_template("login.html", error=None, back=back)

    @app.post("/login")
    async def login() -> Any:
        form = await request.form
        if not dashboard().auth.check_token(form.get("token", "").strip()):
            return await render_template("login.html", error="That is not the operator token."), 401
        response = redirect(safe_next_path(form.get("next", "/")))
        response.set_cookie(
            COOKIE,
            dashboard().auth.token,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    async def logout() -> Any:
        response = redirect("/login")
        response.delete_cookie(COOKIE, path="/")
        return response


def _add_pages(app: QuartTrio) -> None:
    """The HTML pages: the overview (the fleet), the attention inbox, one page per agent."""

    @app.get("/")
    async def overview() -> str:
        return await render_template("overview.html", csrf=dashboard().auth.csrf, page="overview")

    @app.get("/inbox")
    async def inbox_page() -> str:
        return await render_template("inbox.html", csrf=dashboard().auth.csrf, page="inbox")

    @app.get("/agents/<name>")
    async def agent_page(name: str) -> str:
        try:
            validate_agent_name(name)
        except WireError:
            abort(404)
        return await render_template(
            "agent.html", csrf=dashboard().auth.csrf, agent=name, page="agent"
        )


def _add_terminal(app: QuartTrio) -> None:
    """The terminal websocket: a shell in an agent's sandbox."""

    @app.websocket("/api/agents/<name>/terminal")
    async def terminal(name: str) -> None:
        """Websocket: a PTY shell in the agent's sandbox (needs ?csrf=)"""
        board = dashboard()
        agent_cfg = await _agent_config(board, name)
        if agent_cfg is None:
            abort(404)
        cfg = board.ctx.config
        # The dashboard is the operator, never root: no shell as the supervisor's user.
        refused = await trio.to_thread.run_sync(terminal_refusal, agent_cfg, cfg)
        if refused is not None:
            await websocket.accept()
            await websocket.send(f"cannot open a terminal for {name}: {refused}\r\n")
            await websocket.close(1008, NEEDS_ROOT)  # 1008: policy violation
            # Until the browser answers the close (which ends this handler), or it would
            # see the connection drop (1006) instead of the reason.
            with trio.move_on_after(5):
                await trio.sleep_forever()
            return
        paths = AgentPaths.for_agent(name, cfg.state_dir, cfg.sockets_dir)
        session = TerminalSession(agent_cfg, paths)
        board.closers.add(session.close)
        try:
            await websocket.accept()
            await session.run()
        finally:
            board.closers.discard(session.close)


async def _agent_config(board: Dashboard, name: str) -> AgentConfig | None:
    try:
        validate_agent_name(name)
    except WireError:
        return None

    def load(q: Any) -> AgentConfig | None:
        for row in q.agents():
            if row.name == name:
                return AgentConfig.from_dict(row.config, where=f"stored agent '{name}'")
        return None

    result: AgentConfig | None = await board.ctx.services.reader.run(load)
    return result


# --- the gate -------------------------------------------------------------------------------


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _same_origin(origin: str | None, host: str | None) -> bool:
    """A browser's Origin header, when sent, must name this server."""
    if not origin:
        return True
    return urlsplit(origin).netloc == (host or "")


async def _gate() -> Any:
    path = request.path
    if any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC_PATHS):
        return None
    auth = dashboard().auth
    if request.method not in SAFE_METHODS:
        # Read the body even when refusing: an unread body left on a kept-alive
        # connection would be parsed as the next request.
        await request.get_data()
    if not auth.check_token(_presented_token()):
        if path.startswith("/api/"):
            return _deny(
                401, "unauthorized", "log in first: the operator token is missing or wrong"
            )
        return redirect(f"/login?next={quote(path)}")
    if request.method not in SAFE_METHODS:
        if not _same_origin(request.headers.get("Origin"), request.headers.get("Host")):
            return _deny(403, "forbidden", "cross-origin request refused")
        candidate = request.headers.get(CSRF_HEADER)
        if candidate is None and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            candidate = (await request.form).get("csrf")
        if not auth.check_csrf(candidate):
            return _deny(403, "csrf", f"missing or wrong CSRF token (send it as {CSRF_HEADER})")
    return None


async def _gate_websocket() -> None:
    auth = dashboard().auth
    cookie = websocket.cookies.get(COOKIE)
    header = websocket.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else cookie
    if not auth.check_token(token):
        abort(401)
    # Websockets are not bound by the same-origin policy: check the origin and the CSRF
    # token, or any page the operator visits could open a shell.
    if not _same_origin(websocket.headers.get("Origin"), websocket.headers.get("Host")):
        abort(403)
    if not auth.check_csrf(websocket.args.get("csrf")):
        abort(403)


def _deny(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


# Text worth compressing; the live streams (text/event-stream) never are: they must flush.
COMPRESSIBLE = frozenset(
    {"text/html", "text/css", "text/javascript", "application/javascript", "application/json"}
)
MIN_COMPRESS_BYTES = 1024


@functools.lru_cache(maxsize=64)
def _gzipped(data: bytes) -> bytes:
    # The same static file and vendored library are asked for again and again.
    return gzip.compress(data, compresslevel=6, mtime=0)


async def _compress(response: Response) -> Response:
    """gzip a whole 200 text response when the browser takes it."""
    if (
        response.status_code != 200
        or request.method == "HEAD"
        or response.mimetype not in COMPRESSIBLE
        or "Content-Encoding" in response.headers
        or "gzip" not in request.headers.get("Accept-Encoding", "")
    ):
        return response
    data = await response.get_data(as_text=False)
    if len(data) < MIN_COMPRESS_BYTES:
        return response
    response.set_data(_gzipped(data) if len(data) > 65536 else gzip.compress(data, 6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    response.headers.add("Vary", "Accept-Encoding")
    return response


async def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'",
    )
    return response
