"""A fake Anthropic Messages API for driving the real ``claude`` CLI with no network.

Each test scripts the replies it wants, in order; every request is recorded so the test can
assert what the CLI sent (model, tools, the message history)::

    with FakeAnthropic() as api:
        api.script(ToolUse("mcp__hive__send", {"to": "bob", "body": "hi"}), Text("sent"))
        env = api.env()          # ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, ...
        ... run claude ...
        assert api.requests[0].model == "claude-test"

Replies: ``Text``, ``ToolUse``, ``ApiError`` (with helpers for 401/403/429/500/529 and
"prompt is too long"), ``Hang`` (hold the request open until ``release()``; for cancel tests)
or any callable ``(RecordedRequest) -> reply``. With the script empty the ``default`` reply is
used: by default a short text that quotes the last user message, which makes a usable demo.

Streaming requests (``"stream": true``) get server-sent events shaped like the real API's;
others get one JSON message. ``HEAD /`` and unknown paths answer 404. The server is a
``ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral port, so it serves sync code, trio
tests and benchmarks alike.

Run it alone for a demo: ``python -m tests.fake_anthropic`` prints the env to export.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# -- replies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """An assistant message with one text block; ends the turn."""

    text: str
    input_tokens: int = 20
    output_tokens: int = 5


@dataclass(frozen=True)
class ToolUse:
    """An assistant message that calls one tool (optionally after some text)."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    id: str = ""  # default: a fresh toolu_... id
    input_tokens: int = 20
    output_tokens: int = 10


@dataclass(frozen=True)
class ApiError:
    """An HTTP error with the API's JSON error body."""

    status: int
    error_type: str
    message: str

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


@dataclass(frozen=True)
class Hang:
    """Hold the request open until ``FakeAnthropic.release()`` (or stop), then reply."""

    then: Text | ToolUse | ApiError = Text("released")


Reply = Text | ToolUse | ApiError | Hang
ReplyFn = Callable[["RecordedRequest"], Reply]


def unauthorized() -> ApiError:
    return ApiError(401, "authentication_error", "invalid x-api-key")


def forbidden() -> ApiError:
    return ApiError(403, "permission_error", "Your API key does not have permission to use it")


def rate_limited() -> ApiError:
    return ApiError(
        429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"
    )


def server_error() -> ApiError:
    return ApiError(500, "api_error", "Internal server error")


def overloaded() -> ApiError:
    return ApiError(529, "overloaded_error", "Overloaded")


def prompt_too_long() -> ApiError:
    return ApiError(
        400, "invalid_request_error", "prompt is too long: 208317 tokens > 200000 maximum"
    )


def echo_text(req: RecordedRequest) -> Reply:
    """The demo default: answer with a short text quoting the last user message."""
    last = req.last_user_text()
    return Text(f"(fake model) I got: {last[:200]}" if last else "(fake model) hello")


# -- recorded requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.body.get("tools", [])]

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))

    def all_text(self) -> str:
        """Every text in the messages (text blocks, tool results), joined: for assertions."""
        out: list[str] = []
        for m in self.messages:
            out.extend(_texts(m.get("content")))
        return "\n".join(out)

    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                texts = [t for t in _texts(m.get("content")) if not t.startswith("<system-")]
                if texts:
                    return texts[-1]
        return ""

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last user message (what the tools answered)."""
        for m in reversed(self.messages):
            if m.get("role") == "user" and isinstance(m.get("content"), list):
                return [b for b in m["content"] if b.get("type") == "tool_result"]
        return []


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                out.extend(_texts(block.get("content")))
    return out


# -- the server -----------------------------------------------------------------------------


class FakeAnthropic:
    """The fake API server. Use as a context manager, or call ``start()`` / ``stop()``."""

    def __init__(self, default: Reply | ReplyFn = echo_text, api_key: str = "test-key") -> None:
        self.default = default
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []  # POST /v1/messages only
        self.other_requests: list[RecordedRequest] = []  # HEAD /, count_tokens, ...
        self._script: list[Reply | ReplyFn] = []
        self._cond = threading.Condition()
        self._released = threading.Event()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeAnthropic:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the fake first"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a claude process that talks to this fake and nothing else."""
        env = {
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": self.api_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        env.update(extra)
        return env

    # scripting

    def script(self, *replies: Reply | ReplyFn) -> None:
        """Queue replies for the next requests, in order."""
        with self._cond:
            self._script.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._cond:
            return len(self._script)

    def release(self) -> None:
        """Let every ``Hang`` reply (current and future, until ``hold()``) go on."""
        self._released.set()

    def hold(self) -> None:
        """Make later ``Hang`` replies hold again after a ``release()``."""
        self._released.clear()

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Block until at least ``n`` message requests arrived; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")
            return list(self.requests)

    # called from handler threads

    def _record(self, req: RecordedRequest) -> None:
        with self._cond:
            if req.method == "POST" and req.path == "/v1/messages":
                self.requests.append(req)
            else:
                self.other_requests.append(req)
            self._cond.notify_all()

    def _next_reply(self, req: RecordedRequest) -> Reply:
        with self._cond:
            item = self._script.pop(0) if self._script else self.default
        reply = item if isinstance(item, Text | ToolUse | ApiError | Hang) else item(req)
        if isinstance(reply, Hang):
            # Poll the stop flag too, so a forgotten release() never hangs a test run.
            while not self._released.wait(0.2):
                if self._stopping.is_set():
                    break
            return reply.then
        return reply

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away (a killed turn, a keep-alive reset): expected
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read requests
        pass

    def _read(self, method: str) -> RecordedRequest:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = RecordedRequest(method, path, query, headers, body)
        self.fake._record(req)
        return req

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", self.fake._new_id("req"))
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a killed turn)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_HEAD(self) -> None:
        self._read("HEAD")
        self._send(404, b"", "text/plain")

    def do_GET(self) -> None:
        self._read("GET")
        self._json(404, ApiError(404, "not_found_error", "Not found").body())

    def do_POST(self) -> None:
        req = self._read("POST")
        if req.path == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": len(json.dumps(req.body)) // 4})
            return
        if req.path != "/v1/messages":
            self._json(404, ApiError(404, "not_found_error", f"no route {req.path}").body())
            return
        reply = self.fake._next_reply(req)
        if isinstance(reply, ApiError):
            self._json(reply.status, reply.body())
            return
        assert not isinstance(reply, Hang)
        message = self._message(req, reply)
        if req.body.get("stream"):
            self._send(200, b"".join(_sse(message)), "text/event-stream")
        else:
            self._json(200, message)

    def _message(self, req: RecordedRequest, reply: Text | ToolUse) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if isinstance(reply, Text):
            content.append({"type": "text", "text": reply.text})
            stop = "end_turn"
        else:
            if reply.text:
                content.append({"type": "text", "text": reply.text})
            content.append(
                {
                    "type": "tool_use",
                    "id": reply.id or self.fake._new_id("toolu"),
                    "name": reply.name,
                    "input": reply.input,
                }
            )
            stop = "tool_use"
        return {
            "id": self.fake._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": req.model or "claude-fake",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }


def _sse(message: dict[str, Any]) -> Iterator[bytes]:
    """The message as the API's event stream: start, one block at a time, delta, stop."""

    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
    yield event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": dict(block, input={}),
                },
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield event("message_stop", {"type": "message_stop"})


def main() -> None:
    """Serve the echo default until interrupted and print the env for a demo."""
    with FakeAnthropic() as api:
        for key, value in api.env(CLAUDE_CODE_MAX_RETRIES="2").items():
            print(f"export {key}={value}")
        print("# fake Anthropic API running; Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
