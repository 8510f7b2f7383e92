"""The log viewer's follow stream: new lines of an agent's log as server-sent events.

Reads through the admin verb ``logs`` (hive.logtail), as the viewer's first page and
``hivectl logs --follow`` do: every viewer shows the same lines from the same source.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import trio

from hive.actors.base import HiveContext
from hive.ui.calls import ApiError, call_verb

POLL_SECONDS = 0.5
PAGE_LINES = 1000
KEEPALIVE_SECONDS = 15.0


def _sse(lines: list[str], cursor: str) -> bytes:
    """One event: new lines, and the cursor after them, also as the event's id: a browser
    that reconnects sends it back (Last-Event-ID) and resumes there."""
    data = json.dumps({"lines": lines, "cursor": cursor})
    return f"id: {cursor}\ndata: {data}\n\n".encode()


class Follower:
    """New lines of one agent's log after ``after`` (a cursor from the log's first page; ""
    for from now on), until closed or the agent is gone."""

    def __init__(self, ctx: HiveContext, agent: str, after: str = "") -> None:
        self.ctx = ctx
        self.agent = agent
        self.after = after
        self.cancel = trio.CancelScope()

    def close(self) -> None:
        self.cancel.cancel()

    async def _page(self, lines: int, after: str) -> dict[str, object] | None:
        """A page of the log; None when following must end (the agent is gone). A log
        that cannot be read just now (journalctl failed) is an empty page: try again."""
        args = {"name": self.agent, "lines": lines, "after": after}
        try:
            page: dict[str, object] = await call_verb(self.ctx, "logs", args)
        except ApiError as exc:
            if exc.code == "unavailable":
                return {"lines": [], "cursor": after, "more": False}
            return None
        return page

    async def events(self) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        with self.cancel:
            cursor = self.after
            if not cursor:  # from now on: the newest line's cursor
                first = await self._page(1, "")
                if first is None:
                    return
                cursor = str(first["cursor"])
            idle = 0.0
            while True:
                page = await self._page(PAGE_LINES, cursor)
                if page is None:  # the agent is gone, or the cursor is not this log's
                    return
                cursor = str(page["cursor"])
                lines = page["lines"]
                if isinstance(lines, list) and lines:
                    yield _sse([str(line) for line in lines], cursor)
                    idle = 0.0
                if page.get("more"):
                    continue
                await trio.sleep(POLL_SECONDS)
                idle += POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield b": keepalive\n\n"
