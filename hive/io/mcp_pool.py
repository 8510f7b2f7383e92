"""The MCP pool: one process per distinct extra MCP server, shared by the agents that declare
it (same command, args and env), instead of one per agent per claude process.

An agent's claude starts the relay (hive/mcp_relay.py) with ``HIVE_MCP_SERVER=NAME``; the
relay's ``mcp {server}`` request (hive.io.agent_socket) attaches that connection here as one
client of the pooled process. A stdio MCP server speaks one session per process, so the pool
multiplexes:

- The pool initializes the process once (with the first client's protocol version and no
  client capabilities) and answers every client's ``initialize`` with that cached result;
  clients' ``notifications/initialized`` are not passed on.
- Each client request gets a pool-wide id on its way in, and its answer gets the client's
  own id back; a progress token is rewritten the same way. ``notifications/cancelled`` is
  mapped to the pool id. Other client notifications are dropped.
- From the server: answers and progress go to the client they belong to; ``*/list_changed``
  goes to every client; other notifications (logging, resource updates) are dropped, since
  they name no client. Requests from the server (sampling, roots, elicitation) are refused:
  a shared process cannot ask one agent's model; ``ping`` is answered by the pool.

A pooled process that exits fails the requests it had with a JSON-RPC error naming its exit
code and the end of its stderr; the next request starts it again. With no client attached
for ``[hive] mcp_pool_idle_seconds`` it is stopped. Which agents may share is
``hive.policy.mcp_pooled``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

import trio

from hive.config import McpServerConfig
from hive.io.group import open_group, run_group
from hive.process import ProcessSpec

log = logging.getLogger(__name__)

START_SECONDS = 60.0  # for a pooled process to answer initialize
MAX_LINE_BYTES = 8 << 20
STDERR_LINES = 20  # kept for the error a crash is reported with
SEND_SECONDS = 10.0  # for a client to take one answer
POOL_ERROR = -32000
# The supervisor's environment reaches a pooled process only through these names.
PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

Key = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]


def pool_key(server: McpServerConfig) -> Key:
    """What makes two declared servers the same process: command, args and env."""
    return (server.command, tuple(server.args), tuple(sorted(server.env.items())))


class PoolError(Exception):
    """A pooled process could not serve (did not start, or exited)."""


class McpPool:
    """Every pooled process of one supervisor (trio thread only)."""

    def __init__(self, workdir: Path, nursery: trio.Nursery, idle_seconds: float) -> None:
        self.workdir = workdir
        self.nursery = nursery
        self.idle_seconds = idle_seconds
        self.servers: dict[Key, PooledServer] = {}

    async def attach(self, agent: str, server: McpServerConfig, stream: trio.abc.Stream) -> None:
        """Serve one client (an agent's relay) of ``server`` until it hangs up."""
        key = pool_key(server)
        pooled = self.servers.get(key)
        if pooled is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
            spec = ProcessSpec(
                argv=(server.command, *server.args),
                env={**env, **server.env},
                cwd=self.workdir,
            )
            pooled = PooledServer(server.name, spec, self.nursery, self.idle_seconds)
            self.servers[key] = pooled
        await pooled.serve(PoolClient(agent, stream))

    def pids(self) -> list[int]:
        """The pooled processes running now."""
        return [s.process.pid for s in self.servers.values() if s.process is not None]


class PoolClient:
    """One attached relay connection: where its answers go."""

    _ids = itertools.count(1)

    def __init__(self, agent: str, stream: trio.abc.Stream) -> None:
        self.id = next(self._ids)
        self.agent = agent
        self.stream = stream
        self.lock = trio.Lock()
        self.gone = False

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; a client that does not take it within ``SEND_SECONDS`` is
        dropped (it would hold up the server's answers to every other client)."""
        if self.gone:
            return
        try:
            with trio.move_on_after(SEND_SECONDS) as timer:
                async with self.lock:
                    await self.stream.send_all(json.dumps(message).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.gone = True
        if timer.cancelled_caught:
            log.warning("MCP pool: %s does not read its answers; dropping it", self.agent)
            self.gone = True
            with trio.CancelScope(shield=True):
                await self.stream.aclose()


class PooledServer:
    """One pooled process and the clients it serves, multiplexed (module docstring)."""

    def __init__(
        self, name: str, spec: ProcessSpec, nursery: trio.Nursery, idle_seconds: float
    ) -> None:
        self.name = name
        self.idle_seconds = idle_seconds
        self.spec = spec
        self.nursery = nursery
        self.clients: set[PoolClient] = set()
        self.process: trio.Process | None = None
        self.ready: trio.Event | None = None  # set once initialize answered or failed
        self.init_result: dict[str, Any] | None = None
        self.error = ""
        self.scope: trio.CancelScope | None = None  # the running process's lifetime
        # pool id -> (client, its id); client None: the pool's own initialize
        self.routes: dict[int, tuple[PoolClient | None, Any]] = {}
        self.tokens: dict[str, tuple[PoolClient, Any]] = {}  # progress token -> client
        self.token_of: dict[int, str] = {}  # pool id -> the progress token its request set
        self.ids = itertools.count(1)
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self.idle = trio.CancelScope()
        self.init_done = trio.Event()  # initialize answered, or stdout ended first
        self.stdin_lock = trio.Lock()

    # -- a client's side ----------------------------------------------------------------

    async def serve(self, client: PoolClient) -> None:
        self.clients.add(client)
        self.idle.cancel()  # in use again
        lines = _LineReader(client.stream)
        try:
            while (message := await lines.read()) is not _END:
                await self._from_client(client, message)
        finally:
            client.gone = True
            self.clients.discard(client)
            for pool_id in [i for i, (c, _) in self.routes.items() if c is client]:
                self._forget(pool_id)
            if not self.clients:
                self.nursery.start_soon(self._stop_when_idle)

    async def _from_client(self, client: PoolClient, message: Any) -> None:
        params = message.get("params", {}) if isinstance(message, dict) else None
        if not isinstance(params, dict):  # not JSON (-32700), or params not a map (-32600)
            code = -32600 if isinstance(message, dict) else -32700
            error = {"code": code, "message": "not a JSON-RPC message with map params"}
            answer_id = message.get("id") if isinstance(message, dict) else None
            await client.send({"jsonrpc": "2.0", "id": answer_id, "error": error})
            return
        method, request_id = message.get("method"), message.get("id")
        if not isinstance(method, str):
            return  # an answer to a request the pool never passes on
        if "id" not in message:
            await self._client_notification(client, message)
            return
        try:
            await self.start(message.get("params") if method == "initialize" else None)
        except PoolError as exc:
            await client.send(_error(request_id, str(exc)))
            return
        if method == "initialize":
            await client.send({"jsonrpc": "2.0", "id": request_id, "result": self.init_result})
            return
        pool_id = next(self.ids)
        self.routes[pool_id] = (client, request_id)
        self._map_progress(pool_id, client, params)
        sent = await self._to_server({**message, "id": pool_id})
        if not sent and self._forget(pool_id) is not None:  # not answered by _exited
            reason = f"the shared MCP server '{self.name}' exited; try again"
            await client.send(_error(request_id, reason))

    async def _client_notification(self, client: PoolClient, message: dict[str, Any]) -> None:
        if message.get("method") != "notifications/cancelled" or self.process is None:
            return  # initialized: the pool's own was sent; others name no pooled state
        params = message.get("params")
        if not isinstance(params, dict):
            return
        for pool_id, (owner, their_id) in self.routes.items():
            if owner is client and their_id == params.get("requestId"):
                await self._to_server({**message, "params": {**params, "requestId": pool_id}})
                return

    def _map_progress(self, pool_id: int, client: PoolClient, params: dict[str, Any]) -> None:
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            token = f"pool-{pool_id}"
            self.tokens[token] = (client, meta["progressToken"])
            self.token_of[pool_id] = token
            meta["progressToken"] = token

    def _forget(self, pool_id: int) -> tuple[PoolClient | None, Any] | None:
        """A request answered or abandoned: its route and progress token go."""
        token = self.token_of.pop(pool_id, None)
        if token is not None:
            self.tokens.pop(token, None)
        return self.routes.pop(pool_id, None)

    async def _to_server(self, message: dict[str, Any]) -> bool:
        """False if the process is gone (then ``_exited`` answers the routes it had)."""
        process = self.process
        if process is None or process.stdin is None:
            return False
        try:
            async with self.stdin_lock:  # clients write from their own tasks
                await process.stdin.send_all(json.dumps(message).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _stop_when_idle(self) -> None:
        with trio.CancelScope() as self.idle:
            await trio.sleep(self.idle_seconds)
            if not self.clients and self.scope is not None:
                self.error = (
                    f"the shared MCP server '{self.name}' was stopped after "
                    f"{self.idle_seconds:g} s without clients"
                )
                self.scope.cancel()

    # -- the process's side ---------------------------------------------------------------

    async def start(self, params: Any) -> None:
        """The process running and initialized (started now if need be); PoolError if not."""
        if self.ready is None:
            self.ready = trio.Event()
            self.error = ""
            self.nursery.start_soon(self._run, params if isinstance(params, dict) else {})
        await self.ready.wait()
        if self.init_result is None:
            raise PoolError(self.error)

    async def _run(self, params: dict[str, Any]) -> None:
        ready = self.ready
        assert ready is not None
        try:
            process = await open_group(self.spec, stdin_pipe=True)
        except OSError as exc:
            self.error = f"the shared MCP server '{self.name}' could not start: {exc}"
            self.ready = None
            ready.set()
            return
        self.process = process
        self.init_done = trio.Event()
        with trio.CancelScope() as self.scope:
            tasks = [self._read_stdout, self._read_stderr, lambda: self._initialize(params)]
            await run_group(process, tasks)
        self._exited(process.returncode)
        ready.set()  # if it died before answering initialize: the waiters get self.error

    async def _initialize(self, params: dict[str, Any]) -> None:
        pool_id = next(self.ids)
        version = params.get("protocolVersion") or "2025-06-18"
        init_params = {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "hive-mcp-pool", "version": "1"},
        }
        self.routes[pool_id] = (None, None)
        await self._to_server(
            {"jsonrpc": "2.0", "id": pool_id, "method": "initialize", "params": init_params}
        )
        with trio.move_on_after(START_SECONDS):
            await self.init_done.wait()
            if self.init_result is not None:
                await self._to_server({"jsonrpc": "2.0", "method": "notifications/initialized"})
                assert self.ready is not None
                self.ready.set()
            return
        self.error = f"the shared MCP server '{self.name}' did not answer initialize in time"
        assert self.scope is not None
        self.scope.cancel()

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        lines = _LineReader(self.process.stdout)
        while (message := await lines.read()) is not _END:
            await self._from_server(message)
        self.init_done.set()  # whatever it said, it will say no more

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for chunk in self.process.stderr:
            for line in bytes(chunk).decode(errors="replace").splitlines():
                if line.strip():
                    self.stderr.append(line[:500])

    async def _from_server(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            await self._server_request(message)
        elif isinstance(method, str):
            await self._server_notification(method, message)
        elif isinstance(message.get("id"), int):
            route = self._forget(message["id"])
            if route is None:
                return  # its client hung up
            client, their_id = route
            if client is None:
                self._initialized(message)
            else:
                await client.send({**message, "id": their_id})

    def _initialized(self, answer: dict[str, Any]) -> None:
        result = answer.get("result")
        if isinstance(result, dict):
            self.init_result = result
        else:
            self.error = f"the shared MCP server '{self.name}' refused initialize: {answer}"
            assert self.scope is not None
            self.scope.cancel()
        self.init_done.set()

    async def _server_request(self, message: dict[str, Any]) -> None:
        if message["method"] == "ping":
            await self._to_server({"jsonrpc": "2.0", "id": message["id"], "result": {}})
            return
        refusal = {
            "code": -32601,
            "message": "the hive MCP pool does not pass a shared server's requests to clients",
        }
        await self._to_server({"jsonrpc": "2.0", "id": message["id"], "error": refusal})

    async def _server_notification(self, method: str, message: dict[str, Any]) -> None:
        if method.endswith("/list_changed"):
            for client in list(self.clients):
                await client.send(message)
        elif method == "notifications/progress":
            params = dict(message.get("params") or {})
            owner = self.tokens.get(str(params.get("progressToken")))
            if owner is not None:
                params["progressToken"] = owner[1]
                await owner[0].send({**message, "params": params})

    def _exited(self, code: int | None) -> None:
        """Fail what the process had; the next request starts a new one."""
        tail = " | ".join(self.stderr)
        reason = self.error or (
            f"the shared MCP server '{self.name}' exited (code {code})"
            + (f"; its stderr ended: {tail}" if tail else "")
            + "; it is started again on the next call"
        )
        if self.init_result is not None or not self.error:
            log.warning("MCP pool: %s", reason)
        self.error = reason
        routes, self.routes = self.routes, {}
        for client, their_id in routes.values():
            if client is not None:
                self.nursery.start_soon(client.send, _error(their_id, reason))
        self.tokens.clear()
        self.token_of.clear()
        self.process = None
        self.scope = None
        self.init_result = None
        self.ready = None


def _error(request_id: Any, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": POOL_ERROR, "message": message}}


_END = object()  # what _LineReader.read returns once the stream has ended


class _LineReader:
    """JSON values, one per line (an unparsable line reads as None), then ``_END``."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: deque[bytes] = deque()
        self.buffer = b""

    async def read(self) -> Any:
        while not self.lines:
            if len(self.buffer) > MAX_LINE_BYTES:
                log.warning("MCP pool: a line over %d bytes; closing", MAX_LINE_BYTES)
                return _END
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return _END
            if not data:
                return _END
            *lines, self.buffer = (self.buffer + data).split(b"\n")
            self.lines.extend(line for line in lines if line.strip())
        try:
            return json.loads(self.lines.popleft())
        except ValueError:
            return None
