"""A small real agent-socket server for tests of hive's MCP tools and the claude runtime.

It speaks the agent socket protocol (hive.wire frames on a real unix socket) with just
enough behaviour to exercise every tool: an inbox that ``recv`` long-polls, operator
questions the test answers or cancels, refusals, and a log of every request. The ``mcp`` op
runs the hive's real MCP session (hive.io.mcp_transport) on the connection, as the supervisor
does, with the stub's ops behind the tools. The full supervisor replaces it in end-to-end
tests.

    stub = AgentSocketStub(path, name="alice")
    async with trio.open_nursery() as nursery:
        await nursery.start(stub.serve)
        ...
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from hive.client import HiveError
from hive.wire import FrameDecoder, Request, WireError, arg, encode_frame, error_reply, ok_reply

MANAGER_OPS = frozenset(
    {
        "request_spawn",
        "request_spawn_draft",
        "request_spawn_commit",
        "request_apply_commit",
        "kick_agent",
        "schedule_prompt",
    }
)


@dataclass
class Question:
    id: int
    question: str
    options: list[str] | None
    ttl_seconds: int | None
    done: trio.Event = field(default_factory=trio.Event)
    status: str = "pending"
    answer: str | None = None


class AgentSocketStub:
    def __init__(self, path: Path, name: str = "alice", manager: bool = False) -> None:
        self.path = path
        self.name = name
        self.manager = manager
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every request, in order
        self.sent: list[dict[str, Any]] = []  # accepted `send`s
        self.status_text = ""
        self.refuse: dict[str, str] = {}  # recipient -> refusal message
        self.questions: dict[int, Question] = {}
        self.question_asked = trio.Event()
        self.recv_waiting = trio.Event()  # set when a recv call starts to wait
        self.stopped = trio.Event()  # set once serve() ended and every connection is closed
        self._scope = trio.CancelScope()
        self.connections = 0
        self._inbox: list[dict[str, Any]] = []
        self._inbox_changed = trio.Event()
        self._ids = itertools.count(100)

    # test side

    def deliver(self, sender: str, body: str) -> None:
        """Put a message in the inbox; a waiting ``recv`` returns it."""
        self._inbox.append(
            {
                "id": next(self._ids),
                "from": sender,
                "to": self.name,
                "kind": "message",
                "body": body,
                "ts": time.time(),
            }
        )
        self._inbox_changed.set()
        self._inbox_changed = trio.Event()

    def answer(self, qid: int, answer: str) -> None:
        q = self.questions[qid]
        q.status, q.answer = "answered", answer
        q.done.set()

    # server side

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                sock = trio.socket.socket(trio.socket.AF_UNIX)
                await sock.bind(str(self.path))
                sock.listen(16)
                async with trio.SocketListener(sock) as listener:
                    task_status.started()
                    await trio.serve_listeners(self._connection, [listener])
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        """Go away like a dead supervisor: close the listener and every connection."""
        self._scope.cancel()
        await self.stopped.wait()

    async def _connection(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        decoder = FrameDecoder()
        send_lock = trio.Lock()
        async with stream, trio.open_nursery() as nursery:
            while data := await stream.receive_some(65536):
                for frame in decoder.feed(bytes(data)):
                    if isinstance(frame, Exception):
                        continue
                    if frame.get("op") == "mcp":
                        await self._serve_mcp(stream, frame)
                        nursery.cancel_scope.cancel()
                        return
                    nursery.start_soon(self._answer, stream, send_lock, frame)
            nursery.cancel_scope.cancel()

    async def _serve_mcp(self, stream: trio.abc.Stream, frame: dict[str, Any]) -> None:
        from hive.io.mcp_transport import serve_mcp
        from hive.mcp_server import McpSession

        self.calls.append(("mcp", frame.get("args") or {}))
        await stream.send_all(encode_frame(ok_reply(frame.get("id"), {"mode": "mcp"})))
        await serve_mcp(stream, McpSession(_StubCaller(self), self.name, self.manager))

    async def _answer(
        self, stream: trio.abc.Stream, lock: trio.Lock, frame: dict[str, Any]
    ) -> None:
        try:
            req = Request.from_frame(frame)
            self.calls.append((req.op, req.args))
            reply = ok_reply(req.id, await self._handle(req.op, req.args))
        except WireError as exc:
            reply = error_reply(frame.get("id"), exc)
        async with lock:
            try:
                await stream.send_all(encode_frame(reply))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "whoami":
            return {"name": self.name, "manager": self.manager}
        if op == "send":
            to = arg(args, "to", str)
            body = arg(args, "body", str)
            if to in self.refuse:
                raise WireError("not_allowed", self.refuse[to])
            msg_id = next(self._ids)
            self.sent.append({"id": msg_id, "to": to, "body": body})
            return {"id": msg_id}
        if op == "recv":
            wait = arg(args, "wait_seconds", float, 0.0)
            if not 0 <= wait <= 180:
                raise WireError("bad_request", "wait_seconds must be between 0 and 180")
            with trio.move_on_after(wait):
                if not self._inbox and wait > 0:
                    self.recv_waiting.set()
                while not self._inbox:
                    await self._inbox_changed.wait()
            messages, self._inbox = self._inbox, []
            return {"messages": messages}
        if op == "set_status":
            self.status_text = arg(args, "text", str)
            return {}
        if op == "ask_operator":
            q = Question(
                next(self._ids),
                arg(args, "question", str),
                arg(args, "options", list, None),
                arg(args, "ttl_seconds", int, None),
            )
            self.questions[q.id] = q
            self.question_asked.set()
            with trio.move_on_after(q.ttl_seconds if q.ttl_seconds is not None else float("inf")):
                await q.done.wait()
            if not q.done.is_set():
                q.status = "expired"
            out: dict[str, Any] = {"id": q.id, "status": q.status}
            if q.answer is not None:
                out["answer"] = q.answer
            return out
        if op == "cancel_question":
            qid = arg(args, "id", int)
            if qid not in self.questions:
                raise WireError("unknown_question", f"no open question #{qid}")
            q = self.questions[qid]
            q.status = "cancelled"
            q.done.set()
            return {}
        if op in MANAGER_OPS:
            if not self.manager:
                raise WireError("not_manager", f"'{op}' is for the manager only")
            if op == "kick_agent":
                return {}
            return {"approval": next(self._ids)}
        raise WireError("unknown_op", f"unknown op '{op}'")


class _StubCaller:
    """The MCP tools' calls, handled by the stub's ops (as the supervisor's socket would)."""

    def __init__(self, stub: AgentSocketStub) -> None:
        self.stub = stub

    async def call(self, op: str, **args: Any) -> Any:
        self.stub.calls.append((op, args))
        try:
            return await self.stub._handle(op, args)
        except WireError as exc:
            raise HiveError(exc.code, exc.message) from None
