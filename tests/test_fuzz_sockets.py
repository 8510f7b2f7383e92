"""Fuzz both sockets of one real supervisor (issue 9): random bytes, cut and oversized frames,
msgpack that is not a map, maps with wrong types, unknown ops and known ops with random
arguments. After every example: whatever the daemon wrote back is well-formed frames, every
error carries a code and a message, and a fresh connection is served.

200 examples per socket by default (a few seconds); FUZZ_EXAMPLES=5000 searches deeper.

Admin verbs that change the fleet (stop, destroy, spawn, ...) are left out: the fuzz is about
malformed input, and a well-formed `destroy bob` is the operator's right.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hive.wire import FrameDecoder, encode_frame, request
from tests.hive_harness import RunningHive

CONFIG = """
[hive]
max_frame_bytes = 16384
max_body_bytes = 1024

[[agent]]
name = "manager"

[[agent]]
name = "bob"
[[agent.script]]
do = [{op = "reply", body = "seen"}]
"""

AGENT_OPS = [
    "send", "recv", "set_status", "kick_agent", "whoami", "ask_operator", "cancel_question",
    "request_spawn", "request_spawn_draft", "request_spawn_commit", "request_apply_commit",
    "schedule_prompt",
]  # fmt: skip
ADMIN_OPS = [
    "version", "list", "status", "messages", "turns", "transcript", "events", "pending",
    "approvals", "drafts", "scheduled", "logs", "stats", "send", "subscribe",
]  # fmt: skip
ARG_NAMES = [
    "to", "body", "wait_seconds", "text", "name", "note", "question", "options", "ttl_seconds",
    "id", "at", "agent", "limit", "turn_id", "names", "lines", "prompt", "sha", "config",
]  # fmt: skip

MSGPACK_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = (
    st.sampled_from(["bob", "manager", "operator", "nobody", "../bob", "", "*"])
    | st.sampled_from([0, -1, 0.5, 1e300, float("nan"), float("inf"), 2**63 - 1, 2**64 - 1])
    | st.none()
    | st.booleans()
    | MSGPACK_INT
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def request_maps(ops: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Maps that look like requests: mostly a right envelope with random arguments to a
    known op; otherwise each field right, wrong or missing."""
    args = st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=8), VALUES, max_size=5)
    envelope = st.fixed_dictionaries(
        {"v": st.just(1), "id": st.integers(1, 2**31), "op": st.sampled_from(ops), "args": args}
    )
    anything = st.fixed_dictionaries(
        {},
        optional={
            "v": st.just(1) | VALUES,
            "id": MSGPACK_INT | VALUES,
            "op": st.sampled_from(ops) | st.text(max_size=20) | VALUES,
            "args": args | VALUES,
        },
    )
    return st.one_of(envelope, envelope, envelope, anything)


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def frames_in_step(ops: list[str]) -> st.SearchStrategy[bytes]:
    """One whole frame: the stream stays in step after it."""
    requests = request_maps(ops).map(lambda m: framed(msgpack.packb(m)))
    return st.one_of(
        requests,
        requests,
        requests,
        st.binary(max_size=200).map(framed),  # garbage in a frame
        VALUES.map(lambda v: framed(msgpack.packb(v))),  # msgpack, mostly not a map
        st.integers(16385, 20000).map(lambda n: framed(b"\x80" * n)),  # over max_frame_bytes
    )


def tails() -> st.SearchStrategy[bytes]:
    """What may end a payload and throw the stream out of step."""
    return st.one_of(
        st.binary(min_size=1, max_size=200),  # anything at all
        st.integers(16385, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # an oversized header
        st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=64)).map(
            lambda t: struct.pack(">I", t[0]) + t[1]  # a length that lies
        ),
    )


def payloads(ops: list[str]) -> st.SearchStrategy[list[bytes]]:
    """Writes to make on one connection: whole frames, then perhaps a tail out of step."""
    return st.tuples(
        st.lists(frames_in_step(ops), min_size=1, max_size=6), st.lists(tails(), max_size=1)
    ).map(lambda t: t[0] + t[1])


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHive]:
    hive = RunningHive.start(tmp_path_factory.mktemp("fuzz") / "hive", CONFIG)
    yield hive
    hive.terminate()


def exchange(path: Path, parts: list[bytes]) -> list[Any]:
    """Send ``parts`` (one write each), end our side, and return every frame the daemon
    wrote back before closing."""
    with closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        try:
            for part in parts:
                sock.sendall(part)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close first (a frame cut by EOF ends the connection)
        decoder = FrameDecoder(1 << 30)
        frames: list[Any] = []
        try:
            while data := sock.recv(1 << 16):
                frames += decoder.feed(data)
        except ConnectionResetError:
            pass
        assert decoder.eof() is None, "the daemon wrote a cut frame"
        return frames


def check_frames(frames: list[Any]) -> None:
    for frame in frames:
        assert isinstance(frame, dict), f"not a frame: {frame!r}"
        assert frame.get("v") == 1, frame
        if "push" in frame:
            continue
        assert isinstance(frame.get("id"), int), frame
        if frame.get("ok") is True:
            assert "result" in frame, frame
            continue
        assert frame.get("ok") is False, frame
        error = frame.get("error")
        assert isinstance(error, dict), frame
        assert isinstance(error.get("code"), str) and error["code"], frame
        assert isinstance(error.get("message"), str) and error["message"], frame


def still_serves(path: Path, op: str) -> None:
    with closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(encode_frame(request(7, op)))
        decoder = FrameDecoder(1 << 20)
        frames: list[Any] = []
        while not frames:
            data = sock.recv(1 << 16)
            assert data, f"{path.name}: closed without answering {op}"
            frames = decoder.feed(data)
        assert frames[0]["id"] == 7 and frames[0]["ok"] is True, frames[0]


FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(agent=st.sampled_from(["bob", "manager"]), parts=payloads(AGENT_OPS))
def test_fuzz_the_agent_socket(fuzzed: RunningHive, agent: str, parts: list[bytes]) -> None:
    path = fuzzed.agent_socket(agent)
    check_frames(exchange(path, parts))
    still_serves(path, "whoami")
    assert fuzzed.process.poll() is None


@FUZZ
@given(parts=payloads(ADMIN_OPS))
def test_fuzz_the_admin_socket(fuzzed: RunningHive, parts: list[bytes]) -> None:
    check_frames(exchange(fuzzed.admin_path, parts))
    still_serves(fuzzed.admin_path, "version")
    assert fuzzed.process.poll() is None
