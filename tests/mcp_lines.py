"""A plain MCP client for tests: JSON-RPC lines to the real relay's stdin, answers from its
stdout, as the claude CLI speaks them (protocol 2025-06-18). No SDK, no event loop: a test
can stop reading, or kill the relay, at any point it chooses.

    with RelayClient(hive.agent_socket("alice")) as mcp:
        mcp.initialize()
        mcp.call_tool("send", {"to": "bob", "body": "hi"})   # -> the result map
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RELAY = Path(__file__).resolve().parents[1] / "hive" / "mcp_relay.py"
PROTOCOL = "2025-06-18"


def relay_argv() -> list[str]:
    return [sys.executable, "-I", "-S", str(RELAY)]


class RelayClient:
    def __init__(
        self,
        socket: Path | None,
        server: str = "",
        timeout: float = 60,
        argv: list[str] | None = None,
    ) -> None:
        """The relay on ``socket`` (or any stdio MCP server: ``argv`` and no socket)."""
        env = {"PATH": os.environ.get("PATH", "")}
        if socket is not None:
            env["HIVE_SOCKET"] = str(socket)
        if server:
            env["HIVE_MCP_SERVER"] = server
        self.proc = subprocess.Popen(
            argv or relay_argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._buffer = b""

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def write(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        """The next line the relay writes, as JSON (a bounded wait)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no answer from the relay in {self.timeout} s")
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"the relay ended: {self.stderr()}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its answer (notifications before it are skipped)."""
        req_id = next(self._ids)
        self.write({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}})
        while True:
            answer = self.read()
            if answer.get("id") == req_id:
                return answer

    def initialize(self) -> dict[str, Any]:
        params = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "hive-tests", "version": "1"},
        }
        answer = self.request("initialize", params)
        self.write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result


def text_of(result: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in result.get("content", []))
