"""The one wire definition of hive: msgpack envelopes and length-prefixed frames.

Every byte stream in hive (agent sockets, the admin socket, the store's blobs, federation)
speaks the same thing: a 4-byte big-endian length, then one msgpack map. Requests, replies
and pushes are maps with a protocol version field ``v``::

    request  {"v": 1, "id": 7, "op": "send", "args": {"to": "bob", "body": "hi"}}
    reply    {"v": 1, "id": 7, "ok": True, "result": {"id": 42}}
    error    {"v": 1, "id": 7, "ok": False, "error": {"code": "unknown_agent", "message": "..."}}
    push     {"v": 1, "push": "state", "data": {...}}

>>> frame = encode_frame({"v": 1, "id": 1, "op": "version", "args": {}})
>>> FrameDecoder().feed(frame)
[{'v': 1, 'id': 1, 'op': 'version', 'args': {}}]
"""

from __future__ import annotations

import math
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
# The admin socket's frames (both ways): a transcript or a mailbox page can be large.
ADMIN_MAX_FRAME_BYTES = 16 << 20
MAX_BODY_BYTES = 256 * 1024
_HEADER = struct.Struct(">I")
HEADER_BYTES = _HEADER.size

# Names become socket file names, unit names and directory names, so they are kept boring.
AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
RESERVED_NAMES = frozenset({"operator", "system", "all", "hive"})
MANAGER = "manager"
OPERATOR = "operator"
SYSTEM = "system"


class WireError(Exception):
    """An error that is reported to the peer as an error frame.

    ``code`` is a stable machine-readable word; the message says what went wrong and,
    where it can, what to do about it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class FrameError(WireError):
    """A frame that could not be decoded. The stream is still in sync unless ``fatal``."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(code, message)
        self.fatal = fatal


def validate_agent_name(name: object) -> str:
    """Return ``name`` if it is a valid agent name, else raise a WireError that says why."""
    if not isinstance(name, str):
        raise WireError("invalid_name", f"agent name must be a string, got {type(name).__name__}")
    if name in RESERVED_NAMES:
        raise WireError("invalid_name", f"'{name}' is reserved and cannot name an agent")
    if not AGENT_NAME_RE.fullmatch(name):
        raise WireError(
            "invalid_name",
            f"invalid agent name {name!r}: use 1-32 characters of a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'",
        )
    return name


def validate_recipient(to: object) -> str:
    """Return ``to`` if it can address a message (an agent name or 'operator'), else raise
    a WireError that says why: a malformed name is told apart from an unknown agent."""
    if to == OPERATOR:
        return OPERATOR
    if isinstance(to, str) and "@" in to:  # agent@hive: an agent of another hive
        from hive.federation.address import validate_address

        return validate_address(to)
    return validate_agent_name(to)


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpackb(data: bytes) -> Any:
    # strict_map_key=False: stats and ids are int-keyed maps in places.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_frame(obj: Any, max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    payload = packb(obj)
    if len(payload) > max_frame_bytes:
        raise WireError(
            "frame_too_large",
            f"frame of {len(payload)} bytes exceeds the limit of {max_frame_bytes} bytes",
        )
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed it bytes, get back whole frames.

    A frame that is too large or not a msgpack map comes back as a FrameError in the
    list, in order, and the decoder skips exactly that frame, so one bad request does not
    kill the connection. Call ``eof()`` when the stream ends to learn if a frame was cut.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversize frame still to discard

    def feed(self, data: bytes) -> list[Any]:
        out: list[Any] = []
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while True:
            if self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
                if self._skip:
                    break
            if n - pos < HEADER_BYTES:
                break
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > self.max_frame_bytes:
                out.append(
                    FrameError(
                        "frame_too_large",
                        f"frame of {length} bytes exceeds the limit of "
                        f"{self.max_frame_bytes} bytes; it was discarded",
                    )
                )
                pos += HEADER_BYTES
                self._skip = length
                continue
            if n - pos - HEADER_BYTES < length:
                break
            start = pos + HEADER_BYTES
            payload = bytes(buf[start : start + length])
            pos = start + length
            try:
                obj = unpackb(payload)
            except Exception as exc:  # msgpack raises several unrelated types
                out.append(FrameError("malformed_frame", f"frame is not valid msgpack: {exc}"))
                continue
            if not isinstance(obj, dict):
                out.append(
                    FrameError("malformed_frame", f"frame must be a map, got {type(obj).__name__}")
                )
                continue
            out.append(obj)
        del buf[:pos]
        return out

    def buffered(self) -> int:
        """Bytes fed but not yet returned as a frame (a frame's start, or one being skipped)."""
        return len(self._buf) + self._skip

    def eof(self) -> FrameError | None:
        """The error to report if the stream ended inside a frame, else None."""
        if self._buf or self._skip:
            return FrameError(
                "truncated_frame",
                f"connection closed inside a frame ({len(self._buf)} bytes buffered)",
                fatal=True,
            )
        return None


def request(req_id: int, op: str, **args: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "op": op, "args": args}


def ok_reply(req_id: Any, result: Any = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


def error_reply(req_id: Any, err: WireError) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "error": err.to_wire()}


def push(kind: str, data: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "push": kind, "data": data}


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request frame."""

    id: int
    op: str
    args: dict[str, Any]
    # Who sent it: the uid the admin socket read with SO_PEERCRED, never from the frame.
    # None: a caller in the daemon's own process (the dashboard, for its token holder).
    peer_uid: int | None = None

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Request:
        version = frame.get("v")
        req_id = frame.get("id")
        # type() and not ==: True and 1.0 compare equal to 1 but are not version 1.
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise WireError(
                "bad_version",
                f"protocol version {version!r} is not supported; this daemon speaks "
                f"v{PROTOCOL_VERSION}",
            )
        if not isinstance(req_id, int) or isinstance(req_id, bool):
            raise WireError("bad_request", "request needs an integer 'id'")
        op = frame.get("op")
        if not isinstance(op, str) or not op:
            raise WireError("bad_request", "request needs a string 'op'")
        args = frame.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise WireError("bad_request", "'args' must be a map")
        return cls(req_id, op, args)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message between agents, the operator and the system.

    ``kind`` is ``message`` (from an agent or the operator), ``event`` (from the system:
    crashes, approvals resolved) or ``kick`` (a wake-up note). On the wire the sender is
    ``from``; a frame that lacks a field is refused with ``bad_envelope``:

    >>> env = Envelope(7, "alice", "bob", "the tests pass", ts=0.0)
    >>> wire = env.to_wire()
    >>> wire["from"], wire["to"], wire["kind"]
    ('alice', 'bob', 'message')
    >>> Envelope.from_wire(wire) == env
    True
    >>> try:
    ...     Envelope.from_wire({"id": 8, "to": "bob"})
    ... except WireError as exc:
    ...     print(exc.code, "|", exc.message)
    bad_envelope | envelope is missing or has a bad field: 'from'
    """

    id: int
    sender: str
    to: str
    body: str
    kind: str = "message"
    ts: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "kind": self.kind,
            "body": self.body,
            "ts": self.ts,
            "meta": self.meta,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Envelope:
        try:
            return cls(
                id=int(d["id"]),
                sender=str(d["from"]),
                to=str(d["to"]),
                body=str(d["body"]),
                kind=str(d.get("kind", "message")),
                ts=float(d.get("ts", 0.0)),
                meta=dict(d.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(
                "bad_envelope", f"envelope is missing or has a bad field: {exc}"
            ) from exc


def arg(args: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    """Fetch one request argument with a type check and a clear error."""
    if key not in args or args[key] is None:
        if default is ...:
            raise WireError("bad_request", f"missing argument '{key}'")
        return default
    value = args[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(
            "bad_request", f"argument '{key}' must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


# --- values checked at the edge ------------------------------------------------------------
# One validator per kind of value, used by the admin socket, the agent socket and the
# dashboard API alike, so a bad value is a `bad_request` naming its field wherever it
# comes in, and never reaches SQLite or datetime as an OverflowError or a NaN.

MAX_ROW_ID = 2**63 - 1  # the largest INTEGER SQLite stores; msgpack carries up to 2**64 - 1
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z, the last second datetime can show


def check_id(value: object, name: str) -> int:
    """A row id (turn, approval, question, message): an integer from 1 to 2**63 - 1.

    >>> check_id(7, "id")
    7
    >>> check_id(0, "turn_id")
    Traceback (most recent call last):
    hive.wire.WireError: 'turn_id' must be an id from 1 to 9223372036854775807, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(
            "bad_request", f"'{name}' must be an integer id, got {type(value).__name__}"
        )
    if not 1 <= value <= MAX_ROW_ID:
        raise WireError(
            "bad_request", f"'{name}' must be an id from 1 to {MAX_ROW_ID}, got {value}"
        )
    return value


def id_arg(args: dict[str, Any], key: str) -> int:
    """A required id argument of a request (see ``check_id``)."""
    if key not in args or args[key] is None:
        raise WireError("bad_request", f"missing argument '{key}'")
    return check_id(args[key], key)


def limit_arg(args: dict[str, Any], key: str, default: int, most: int) -> int:
    """A row count: an integer from 1 up, read as at most ``most`` (SQLite takes a negative
    LIMIT as "no limit", so a negative count must not get through)."""
    value: int = arg(args, key, int, default)
    if value < 1:
        raise WireError("bad_request", f"'{key}' must be at least 1, got {value}")
    return min(value, most)


def check_timestamp(value: float, name: str) -> float:
    """Unix seconds: a finite number from 0 (1970) to the end of year 9999.

    >>> check_timestamp(1790000000, "at")
    1790000000.0
    >>> check_timestamp(float("nan"), "at")
    Traceback (most recent call last):
    hive.wire.WireError: 'at' must be unix seconds from 0 to 253402300799, got nan
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError("bad_request", f"'{name}' must be a number, got {type(value).__name__}")
    if not 0 <= value <= MAX_TIMESTAMP:  # also false for NaN; an int is never rounded first
        raise WireError(
            "bad_request",
            f"'{name}' must be unix seconds from 0 to {MAX_TIMESTAMP:.0f}, got {value}",
        )
    return float(value)


def check_since(value: float, now: float, name: str = "since") -> float:
    """A start time: unix seconds, or negative for that many seconds before ``now``
    (clamped at 1970); NaN and infinities are refused like any bad timestamp."""
    if isinstance(value, int | float) and not isinstance(value, bool) and -math.inf < value < 0:
        value = max(0.0, now + value)
    return check_timestamp(value, name)
