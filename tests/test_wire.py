"""hive.wire: frames, requests, envelopes and agent names, as the daemon and clients see them."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest

from hive.wire import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Envelope,
    FrameDecoder,
    FrameError,
    Request,
    WireError,
    arg,
    encode_frame,
    error_reply,
    ok_reply,
    packb,
    request,
    validate_agent_name,
    validate_recipient,
)


def header(length: int) -> bytes:
    return struct.pack(">I", length)


def raw_frame(payload: bytes) -> bytes:
    return header(len(payload)) + payload


def frames_only(items: list[Any]) -> list[dict[str, Any]]:
    assert not [i for i in items if isinstance(i, FrameError)], items
    return items


# --- framing ---------------------------------------------------------------------------------


def test_a_frame_is_a_big_endian_length_then_one_msgpack_map() -> None:
    data = encode_frame({"v": 1, "id": 3})
    payload = msgpack.packb({"v": 1, "id": 3})
    assert data == struct.pack(">I", len(payload)) + payload


def test_frame_split_across_many_feeds_comes_out_once_whole() -> None:
    frame = {"v": 1, "id": 1, "op": "send", "args": {"to": "bob", "body": "x" * 5000}}
    data = encode_frame(frame)
    decoder = FrameDecoder()
    got: list[Any] = []
    for i in range(len(data)):  # one byte at a time, header included
        got += decoder.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == []
    assert frames_only(got) == [frame]
    assert decoder.eof() is None


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    frames = [{"v": 1, "id": i, "op": "whoami"} for i in range(1, 6)]
    data = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    # Two and a half frames, then the rest: a partial frame waits for its tail.
    cut = len(encode_frame(frames[0])) * 2 + 3
    first = decoder.feed(data[:cut])
    rest = decoder.feed(data[cut:])
    assert frames_only(first) == frames[:2]
    assert frames_only(rest) == frames[2:]


def test_an_empty_feed_yields_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.eof() is None


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    limit = 64
    [n] = [n for n in range(limit) if len(packb({"k": "x" * n})) == limit]
    decoder = FrameDecoder(max_frame_bytes=limit)
    frame = {"k": "x" * n}
    assert frames_only(decoder.feed(encode_frame(frame))) == [frame]
    [error] = FrameDecoder(max_frame_bytes=limit - 1).feed(encode_frame(frame))
    assert isinstance(error, FrameError) and error.code == "frame_too_large"


def test_oversize_frame_is_discarded_and_the_stream_resynchronises() -> None:
    limit = 1024
    decoder = FrameDecoder(max_frame_bytes=limit)
    # The oversize payload is itself full of valid frames: none of them may be read,
    # the decoder must skip exactly the declared length.
    smuggled = encode_frame({"v": 1, "id": 66, "op": "send", "args": {"body": "smuggled"}})
    payload = (smuggled * (2 * limit // len(smuggled) + 1))[: 2 * limit]
    after = {"v": 1, "id": 2, "op": "whoami"}
    stream = header(len(payload)) + payload + encode_frame(after)

    got: list[Any] = []
    for i in range(0, len(stream), 100):  # arrives in pieces, as a socket delivers it
        got += decoder.feed(stream[i : i + 100])
    [error, frame] = got
    assert isinstance(error, FrameError)
    assert error.code == "frame_too_large"
    assert str(len(payload)) in error.message and str(limit) in error.message
    assert not error.fatal
    assert frame == after
    assert decoder.eof() is None


def test_oversize_frame_error_is_reported_as_soon_as_its_header_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    [error] = decoder.feed(header(11))
    assert isinstance(error, FrameError) and error.code == "frame_too_large"
    # The 11 bytes still to come are skipped, then frames flow again.
    assert decoder.feed(b"\x00" * 11) == []
    assert frames_only(decoder.feed(encode_frame({"a": 1}))) == [{"a": 1}]


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x81\xa1k",  # a map whose value is missing
        b"\x80\x80",  # two maps where one object is expected
        b"",  # a zero-length frame holds no object at all
    ],
    ids=["reserved-byte", "cut-inside-payload", "trailing-data", "empty"],
)
def test_malformed_msgpack_is_an_error_and_the_next_frame_still_decodes(payload: bytes) -> None:
    decoder = FrameDecoder()
    got = decoder.feed(raw_frame(payload) + encode_frame({"v": 1, "id": 9}))
    [error, frame] = got
    assert isinstance(error, FrameError)
    assert error.code == "malformed_frame"
    assert "msgpack" in error.message
    assert not error.fatal
    assert frame == {"v": 1, "id": 9}


@pytest.mark.parametrize(
    ("value", "type_name"),
    [([1, 2, 3], "list"), ("hello", "str"), (7, "int"), (None, "NoneType"), (b"x", "bytes")],
)
def test_a_frame_that_is_not_a_map_is_refused_by_type(value: object, type_name: str) -> None:
    decoder = FrameDecoder()
    [error, frame] = decoder.feed(encode_frame(value) + encode_frame({"ok": True}))
    assert isinstance(error, FrameError)
    assert error.code == "malformed_frame"
    assert f"must be a map, got {type_name}" in error.message
    assert frame == {"ok": True}


def test_eof_inside_a_frame_is_a_fatal_truncated_frame() -> None:
    data = encode_frame({"v": 1, "id": 1, "op": "whoami"})
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    error = decoder.eof()
    assert isinstance(error, FrameError)
    assert error.code == "truncated_frame"
    assert error.fatal
    assert str(len(data) - 1) in error.message


def test_eof_inside_a_header_is_a_truncated_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00")
    error = decoder.eof()
    assert error is not None and error.code == "truncated_frame"


def test_eof_while_skipping_an_oversize_frame_is_a_truncated_frame() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    decoder.feed(header(100) + b"\x00" * 50)
    error = decoder.eof()
    assert error is not None and error.code == "truncated_frame"


def test_eof_between_frames_is_clean() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame({"a": 1}) * 3)
    assert decoder.eof() is None


def test_encoding_a_frame_over_the_limit_is_refused() -> None:
    with pytest.raises(WireError) as info:
        encode_frame({"body": "x" * 200}, max_frame_bytes=100)
    assert info.value.code == "frame_too_large"
    assert "100" in info.value.message


def test_default_limit_is_one_mebibyte() -> None:
    assert MAX_FRAME_BYTES == 1 << 20
    assert FrameDecoder().max_frame_bytes == 1 << 20


def test_int_keyed_maps_survive_a_round_trip() -> None:
    [frame] = FrameDecoder().feed(encode_frame({1: "a", 2: "b"}))
    assert frame == {1: "a", 2: "b"}


# --- requests and replies ------------------------------------------------------------------


def test_request_helper_builds_a_frame_that_validates() -> None:
    frame = request(7, "send", to="bob", body="hi")
    assert frame == {
        "v": PROTOCOL_VERSION,
        "id": 7,
        "op": "send",
        "args": {"to": "bob", "body": "hi"},
    }
    req = Request.from_frame(frame)
    assert (req.id, req.op, req.args) == (7, "send", {"to": "bob", "body": "hi"})


def test_replies_carry_version_id_and_outcome() -> None:
    assert ok_reply(3, {"id": 42}) == {"v": 1, "id": 3, "ok": True, "result": {"id": 42}}
    err = WireError("unknown_agent", "no agent named 'zed'")
    assert error_reply(3, err) == {
        "v": 1,
        "id": 3,
        "ok": False,
        "error": {"code": "unknown_agent", "message": "no agent named 'zed'"},
    }


def test_request_without_args_has_empty_args() -> None:
    for frame in (
        {"v": 1, "id": 1, "op": "whoami"},
        {"v": 1, "id": 1, "op": "whoami", "args": None},
        {"v": 1, "id": 1, "op": "whoami", "args": {}},
    ):
        assert Request.from_frame(frame).args == {}


@pytest.mark.parametrize(
    "version",
    [None, 0, 2, "1", 1.0, True],
    ids=["missing", "zero", "future", "string", "float", "bool"],
)
def test_request_with_another_protocol_version_is_bad_version(version: object) -> None:
    frame: dict[str, Any] = {"id": 1, "op": "whoami"}
    if version is not None:
        frame["v"] = version
    with pytest.raises(WireError) as info:
        Request.from_frame(frame)
    assert info.value.code == "bad_version"
    assert f"v{PROTOCOL_VERSION}" in info.value.message


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ({"v": 1, "op": "whoami"}, "'id'"),
        ({"v": 1, "id": "7", "op": "whoami"}, "'id'"),
        ({"v": 1, "id": True, "op": "whoami"}, "'id'"),
        ({"v": 1, "id": 1.0, "op": "whoami"}, "'id'"),
        ({"v": 1, "id": 1}, "'op'"),
        ({"v": 1, "id": 1, "op": ""}, "'op'"),
        ({"v": 1, "id": 1, "op": 5}, "'op'"),
        ({"v": 1, "id": 1, "op": "send", "args": [1, 2]}, "'args'"),
        ({"v": 1, "id": 1, "op": "send", "args": "to=bob"}, "'args'"),
    ],
    ids=[
        "no-id",
        "string-id",
        "bool-id",
        "float-id",
        "no-op",
        "empty-op",
        "int-op",
        "list-args",
        "string-args",
    ],
)
def test_malformed_request_is_bad_request_naming_the_field(
    frame: dict[str, Any], needle: str
) -> None:
    with pytest.raises(WireError) as info:
        Request.from_frame(frame)
    assert info.value.code == "bad_request"
    assert needle in info.value.message


def test_arg_checks_presence_and_type() -> None:
    args = {"to": "bob", "wait": 5, "flag": True, "nothing": None}
    assert arg(args, "to", str) == "bob"
    assert arg(args, "wait", float) == 5.0  # an int is fine where a float is asked for
    assert isinstance(arg(args, "wait", float), float)
    assert arg(args, "missing", str, "dflt") == "dflt"
    assert arg(args, "nothing", str, "dflt") == "dflt"  # null counts as absent
    with pytest.raises(WireError, match="missing argument 'missing'") as info:
        arg(args, "missing", str)
    assert info.value.code == "bad_request"
    with pytest.raises(WireError, match="argument 'wait' must be str, got int"):
        arg(args, "wait", str)
    with pytest.raises(WireError, match="argument 'flag' must be int, got bool"):
        arg(args, "flag", int)
    with pytest.raises(WireError, match="argument 'flag' must be float, got bool"):
        arg(args, "flag", float)


# --- envelopes -----------------------------------------------------------------------------


def test_envelope_round_trips_through_a_frame() -> None:
    env = Envelope(
        id=42,
        sender="alice",
        to="bob",
        body="héllo \U0001f41d",
        kind="event",
        ts=1_700_000_000.25,
        meta={"turn": 3, "tags": ["a", "b"]},
    )
    wire = env.to_wire()
    assert wire["v"] == PROTOCOL_VERSION
    assert (wire["from"], wire["to"], wire["kind"]) == ("alice", "bob", "event")
    [decoded] = FrameDecoder().feed(encode_frame(wire))
    assert Envelope.from_wire(decoded) == env


def test_envelope_defaults_to_a_message_stamped_now() -> None:
    env = Envelope(id=1, sender="operator", to="bob", body="hi")
    assert env.kind == "message"
    assert env.ts > 1_600_000_000
    assert env.meta == {}
    again = Envelope.from_wire({"id": 1, "from": "operator", "to": "bob", "body": "hi"})
    assert (again.kind, again.ts, again.meta) == ("message", 0.0, {})


@pytest.mark.parametrize(
    "wire",
    [
        {"from": "a", "to": "b", "body": "x"},
        {"id": 1, "to": "b", "body": "x"},
        {"id": 1, "from": "a", "body": "x"},
        {"id": 1, "from": "a", "to": "b"},
        {"id": "one", "from": "a", "to": "b", "body": "x"},
        {"id": 1, "from": "a", "to": "b", "body": "x", "ts": "noon"},
        {"id": 1, "from": "a", "to": "b", "body": "x", "meta": 5},
    ],
    ids=["no-id", "no-from", "no-to", "no-body", "bad-id", "bad-ts", "bad-meta"],
)
def test_envelope_with_a_missing_or_bad_field_is_bad_envelope(wire: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        Envelope.from_wire(wire)
    assert info.value.code == "bad_envelope"


# --- agent names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "bob", "manager", "agent-7", "a1", "x" * 32, "web-frontend-2"]
)
def test_good_agent_names(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Bob",
        "1bob",
        "-bob",
        "bob-",
        "bob_smith",
        "bob smith",
        "bob.sock",
        "../etc",
        "bob/alice",
        "x" * 33,
        "bob\n",  # names become file names: a trailing newline must not slip through
        "\nbob",
        "böb",
    ],
)
def test_bad_agent_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(WireError) as info:
        validate_agent_name(name)
    assert info.value.code == "invalid_name"
    assert "a-z" in info.value.message


@pytest.mark.parametrize("name", ["operator", "system", "all", "hive"])
def test_reserved_names_cannot_name_an_agent(name: str) -> None:
    with pytest.raises(WireError) as info:
        validate_agent_name(name)
    assert info.value.code == "invalid_name"
    assert "reserved" in info.value.message


@pytest.mark.parametrize("name", [None, 5, b"bob", ["bob"]])
def test_agent_name_must_be_a_string(name: object) -> None:
    with pytest.raises(WireError) as info:
        validate_agent_name(name)
    assert info.value.code == "invalid_name"
    assert "must be a string" in info.value.message


def test_a_recipient_is_an_agent_name_or_the_operator() -> None:
    assert validate_recipient("operator") == "operator"
    assert validate_recipient("bob") == "bob"
    for bad in ("system", "Bob", "bob\n", "", 7):
        with pytest.raises(WireError) as info:
            validate_recipient(bad)
        assert info.value.code == "invalid_name"
