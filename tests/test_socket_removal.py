"""Issue 10 item 2: removing an agent's socket (a destroy) closes its connections only after
what was queued for them is written. The Supervisor answers a destroyed agent's askers and
then removes its socket; both can land on the trio thread in the same tick, so the answer
must survive the removal by construction. Real AgentSockets, a real unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import trio

from hive.actors.base import HiveContext
from hive.config import HiveConfig
from hive.io.agent_socket import AgentConnection, AgentSockets
from hive.io.bridge import IoBridge
from hive.store import IdAllocator
from hive.wire import FrameDecoder, Request, encode_frame, request

DEADLINE = 30.0


async def read_until_eof(stream: trio.SocketStream) -> list[dict[str, Any]]:
    decoder = FrameDecoder(1 << 20)
    frames: list[dict[str, Any]] = []
    with trio.fail_after(DEADLINE):
        while data := await stream.receive_some(65536):
            frames.extend(decoder.feed(data))
    return frames


async def test_a_reply_queued_as_the_socket_is_removed_reaches_its_reader(
    tmp_path: Path,
) -> None:
    cfg = HiveConfig(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    (cfg.sockets_dir / "agents").mkdir(parents=True)
    held: list[tuple[AgentConnection, Request]] = []

    def park(_ctx: HiveContext, _agent: str, conn: AgentConnection, req: Request) -> None:
        held.append((conn, req))  # answered later, as a question is

    async with trio.open_nursery() as nursery:
        bridge = IoBridge(trio.lowlevel.current_trio_token(), nursery)
        services = cast(Any, None)  # the socket's ops here reach no service
        ctx = HiveContext(cfg, bridge, services, IdAllocator(1), IdAllocator(1))
        sockets = AgentSockets(ctx, {"ask_operator": park})
        await nursery.start(sockets.serve, "alice")
        client = await trio.open_unix_socket(str(sockets.socket_path("alice")))
        await client.send_all(encode_frame(request(7, "ask_operator", question="q?")))
        with trio.fail_after(DEADLINE):
            while not held:
                await trio.sleep(0.01)
        conn, req = held[0]
        # The answer is queued and the socket removed in one tick of the trio thread.
        conn.reply(req.id, {"status": "cancelled"})
        sockets._remove("alice")
        frames = await read_until_eof(client)
        assert [(f["id"], f["ok"], f["result"]) for f in frames] == [
            (7, True, {"status": "cancelled"})
        ]
        assert not sockets.socket_path("alice").exists()
        nursery.cancel_scope.cancel()
