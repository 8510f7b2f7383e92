"""A forged peer for the federation tests: a nats-py client holding one hive's NATS
credentials and nothing else, that answers the operator requests a real hive would
answer (``hive.<name>.ctl.<origin>``) with whatever the test chooses, and writes its key
of the fleet bucket with whatever bytes the test chooses.

    forged = ForgedHive.start(url, "forged", password)
    forged.answer = lambda op, args: b"not msgpack"     # None: never answer
    forged.put_row(packb({"agents": "bob"}))
    forged.ask("hive.alpha.ctl.forged", b"garbage")             # alpha's reply
    forged.attempt(lambda nc, js: nc.subscribe("hive.beta.ctl.*"))   # what NATS says
    forged.close()

Its asyncio loop runs in a thread of its own (like the hive's link), so a test drives it
from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hive.federation.address import control_subject
from hive.federation.permissions import FLEET_BUCKET, inbox_prefix
from hive.wire import unpackb

Answer = Callable[[str, dict[str, Any]], bytes | None]


def _no_answer(op: str, args: dict[str, Any]) -> bytes | None:
    return None


@dataclass
class ForgedHive:
    url: str
    name: str
    password: str
    answer: Answer = _no_answer  # set by the test; read on the forged hive's loop
    requests: list[tuple[str, str]] = field(default_factory=list)  # (origin, op) received
    errors: list[str] = field(default_factory=list)  # what NATS reported asynchronously
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _nc: Any = None

    @classmethod
    def start(cls, url: str, name: str, password: str) -> ForgedHive:
        forged = cls(url, name, password)
        threading.Thread(target=forged._loop.run_forever, daemon=True).start()
        forged._run(forged._connect())
        return forged

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> None:
        import nats

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self._nc = await nats.connect(
            self.url,
            user=self.name,
            password=self.password,
            inbox_prefix=inbox_prefix(self.name),
            error_cb=on_error,
            max_reconnect_attempts=0,
        )
        await self._nc.subscribe(control_subject(self.name, "*"), cb=self._on_request)
        await self._nc.flush(5)

    async def _on_request(self, msg: Any) -> None:
        request = unpackb(msg.data)
        op, args = request["op"], request["args"]
        self.requests.append((msg.subject.rsplit(".", 1)[-1], op))
        reply = self.answer(op, args)
        if reply is not None:
            await msg.respond(reply)

    def ask(self, subject: str, data: bytes) -> bytes:
        """A request as this hive (an operator request to another hive, say); the reply."""

        async def request() -> bytes:
            return bytes((await self._nc.request(subject, data, timeout=10)).data)

        result: bytes = self._run(request())
        return result

    def put_row(self, data: bytes) -> None:
        """Write this hive's key of the fleet bucket (the only key its user may write)."""

        async def put() -> None:
            kv = await self._nc.jetstream().key_value(FLEET_BUCKET)
            await kv.put(self.name, data)

        self._run(put())

    def delete_row(self) -> None:
        async def delete() -> None:
            kv = await self._nc.jetstream().key_value(FLEET_BUCKET)
            await kv.delete(self.name)

        self._run(delete())

    def attempt(self, what: Callable[[Any, Any], Coroutine[Any, Any, Any]]) -> str:
        """Run ``what(nc, js)`` as this hive's user, expecting NATS to refuse it; the
        outcome and the asynchronous error NATS sent (a permissions violation comes that
        way, to a callback the client runs in a task of its own: so it is waited for, up
        to 10 s), lower case."""

        async def run() -> str:
            self.errors.clear()
            try:
                outcome = str(await what(self._nc, self._nc.jetstream()))
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            await self._nc.flush(5)
            deadline = self._loop.time() + 10
            while not self.errors and self._loop.time() < deadline:
                await asyncio.sleep(0.02)
            return f"{outcome} | {' | '.join(self.errors)}".lower()

        result: str = self._run(run())
        return result

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._nc.close(), timeout=10)
            except Exception:  # the server may be gone already
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
