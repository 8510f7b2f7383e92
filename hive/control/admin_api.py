"""The admin API in process: one table of verbs (``hive.control.admin_verbs.verb_table``)
and one way to call them.

hivectl reaches it through the admin socket (``hive.io.admin_socket``), the dashboard by
calling ``AdminApi.call`` from its request handlers: the same functions, the same checks,
the same error codes. A verb is ``async def verb(ctx, req) -> reply``: it returns its
reply or raises a WireError, and never sees a connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from hive.wire import Request, WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

Verb = Callable[["HiveContext", Request], Awaitable[Any]]

_call_ids = itertools.count(1)


class AdminApi:
    """Every admin verb of this hive, called by name.

    >>> import asyncio
    >>> async def version(ctx, req):
    ...     return {"version": "x", "asked": req.args}
    >>> api = AdminApi(None, {"version": version})
    >>> asyncio.run(api.call_op("version", {"a": 1}))
    {'version': 'x', 'asked': {'a': 1}}
    >>> api.knows("spawn")
    False
    """

    def __init__(self, ctx: HiveContext, verbs: Mapping[str, Verb]) -> None:
        self.ctx = ctx
        self.verbs = dict(verbs)

    def knows(self, op: str) -> bool:
        return op in self.verbs

    async def call(self, req: Request) -> Any:
        """Run the verb ``req.op``; its reply, or a WireError raised."""
        fn = self.verbs.get(req.op)
        if fn is None:
            known = ", ".join(sorted([*self.verbs, "subscribe"]))
            raise WireError("unknown_op", f"unknown verb '{req.op}' (known: {known})")
        return await fn(self.ctx, req)

    async def call_op(self, op: str, args: dict[str, Any]) -> Any:
        """``call`` for a caller that is not a socket (the dashboard)."""
        return await self.call(Request(next(_call_ids), op, args))
