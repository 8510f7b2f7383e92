"""hive-mcp: the relay between the claude CLI's stdio and the agent's socket.

The hive's MCP tools are served by one MCP server inside hive-supervisor. What runs next to
each claude process is this relay: it connects to the agent's own socket (``$HIVE_SOCKET``:
the socket is the agent's identity), asks the supervisor to switch the connection to MCP
mode (op ``mcp``), and from then on copies newline-delimited JSON-RPC between its stdin/stdout
and the socket::

    HIVE_SOCKET=/run/hive/agents/alice.sock python hive/mcp_relay.py

With ``$HIVE_MCP_SERVER=NAME`` it attaches to the agent's pooled extra MCP server ``NAME``
instead (``[[agent.mcp_servers]]``, see docs/architecture.md, "The MCP pool").

It imports nothing of hive and only C modules of the standard library (``_socket`` and not
``socket``, whose enums cost ~10 ms; ``_json``'s scanner and not ``json``, which imports
``re``), so it starts in about an interpreter's start, run by path: ``<python> -I -S <this
file>``. If the supervisor goes away, it answers every open and later request itself with an
error the model can read, until the CLI closes its stdin.
"""

import _json
import _socket
import posix
import select
import sys

MAX_FRAME = 1 << 20  # the agent socket's default frame limit (hive.wire)
LOST = (
    "lost the connection to the hive supervisor; it may be restarting. The call may not have "
    "reached it; end your turn, you will be woken again."
)


# -- the one msgpack frame this relay writes and the one it reads (a subset of msgpack) -----


def _pack(value: object) -> bytes:
    """msgpack for str, int in 0..2**32-1 and str-keyed maps of those."""
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) < 32:
            return bytes([0xA0 | len(raw)]) + raw
        return b"\xda" + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, int):
        return bytes([value]) if value < 128 else b"\xce" + value.to_bytes(4, "big")
    if isinstance(value, dict):
        out = bytes([0x80 | len(value)])
        for key, item in value.items():
            out += _pack(key) + _pack(item)
        return out
    raise TypeError(f"cannot pack {type(value).__name__}")


def frame(op: str, args: dict[str, object]) -> bytes:
    """A request frame: 4-byte big-endian length, then the msgpack map."""
    body = _pack({"v": 1, "id": 1, "op": op, "args": args})
    return len(body).to_bytes(4, "big") + body


# tag -> (size of its length or value field, signed) for the sized kinds unpack reads
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_INT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
_CONST = {0xC0: None, 0xC2: False, 0xC3: True}


def unpack(data: bytes, at: int = 0) -> tuple[object, int]:
    """One msgpack value at ``at`` (what a reply frame holds: maps, arrays, strings,
    integers, booleans, nil); returns it and the offset after it."""
    tag = data[at]
    at += 1
    if tag < 0x80:
        return tag, at
    if tag >= 0xE0:
        return tag - 0x100, at
    if tag in _CONST:
        return _CONST[tag], at
    if tag in _UINT or tag in _INT:
        size = _UINT.get(tag) or _INT[tag]
        return int.from_bytes(data[at : at + size], "big", signed=tag in _INT), at + size
    if 0xA0 <= tag <= 0xBF or tag in _STR:
        size, at = _length(tag, data, at)
        raw = data[at : at + size]
        return (raw if tag in (0xC4, 0xC5, 0xC6) else raw.decode(errors="replace")), at + size
    if 0x80 <= tag <= 0x9F or tag in (0xDC, 0xDD, 0xDE, 0xDF):  # maps and arrays
        return _container(tag, data, at)
    raise ValueError(f"unsupported msgpack tag 0x{tag:02x}")


def _length(tag: int, data: bytes, at: int) -> tuple[int, int]:
    if tag in _STR:
        size = _STR[tag]
        return int.from_bytes(data[at : at + size], "big"), at + size
    if tag in (0xDC, 0xDE):
        return int.from_bytes(data[at : at + 2], "big"), at + 2
    if tag in (0xDD, 0xDF):
        return int.from_bytes(data[at : at + 4], "big"), at + 4
    return tag & (0x1F if tag >= 0xA0 else 0x0F), at


def _container(tag: int, data: bytes, at: int) -> tuple[object, int]:
    count, at = _length(tag, data, at)
    if 0x80 <= tag <= 0x8F or tag in (0xDE, 0xDF):
        out: dict[object, object] = {}
        for _ in range(count):
            key, at = unpack(data, at)
            out[key], at = unpack(data, at)
        return out, at
    items = []
    for _ in range(count):
        item, at = unpack(data, at)
        items.append(item)
    return items, at


def _read_exact(sock: _socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError("the supervisor closed the connection")
        out += chunk
    return out


def switch_to_mcp(sock: _socket.socket, server: str) -> None:
    """Ask for MCP mode; raise RuntimeError with the supervisor's reason if refused."""
    sock.sendall(frame("mcp", {"server": server} if server else {}))
    size = int.from_bytes(_read_exact(sock, 4), "big")
    if size > MAX_FRAME:
        raise RuntimeError(f"reply frame of {size} bytes is over the limit")
    reply, _ = unpack(_read_exact(sock, size))
    if not isinstance(reply, dict):
        raise RuntimeError("the supervisor's reply is not a map")
    if reply.get("ok") is not True:
        err = reply.get("error")
        err = err if isinstance(err, dict) else {}
        raise RuntimeError(f"{err.get('message', 'refused')} [{err.get('code', 'error')}]")


# -- JSON without the json package (it imports re): the C scanner it is built on -----------


class _Scanner:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Scanner())  # type: ignore[arg-type]  # a duck-typed context
_quote = _json.encode_basestring_ascii


def parse(line: bytes) -> object:
    """One JSON value (a JSON-RPC message), or None if the line is not JSON."""
    try:
        text = line.decode().strip()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return None
    return value if end == len(text) else None


def _dump_id(request_id: object) -> str:
    # A JSON-RPC id is a string or an integer; 1 and "1" are different ids.
    return _quote(request_id) if isinstance(request_id, str) else str(int(request_id))  # type: ignore[call-overload]


def error_answer(request_id: object, method: str) -> bytes:
    """What the relay answers a request itself once the supervisor is gone."""
    head = '{"jsonrpc":"2.0","id":' + _dump_id(request_id)
    if method == "tools/call":  # a tool error the model reads, not a protocol failure
        # resultType: required by the 2026 protocol, an unknown field to older clients
        text = '{"type":"text","text":' + _quote(LOST) + "}"
        tail = ',"result":{"content":[' + text + '],"isError":true,"resultType":"complete"}}'
    else:
        tail = ',"error":{"code":-32000,"message":' + _quote(LOST) + "}}"
    return (head + tail + "\n").encode()


# -- the copy loop --------------------------------------------------------------------------


class Relay:
    """Copies lines both ways; remembers which requests are open, to answer them if the
    supervisor goes away (a request left unanswered would hang the CLI's tool call)."""

    def __init__(self, sock: _socket.socket, stdin: int = 0, stdout: int = 1) -> None:
        self.sock = sock
        self.stdin = stdin
        self.stdout = stdout
        self.open: dict[str, tuple[object, str]] = {}  # id as JSON -> (id, method)
        self.from_cli = b""
        self.from_hive = b""

    def run(self) -> None:
        fd = self.sock.fileno()
        while True:
            ready, _, _ = select.select([self.stdin, fd], [], [])
            if self.stdin in ready and not self._from_cli():
                return  # the CLI closed our stdin: the session is over
            if fd in ready and not self._from_hive():
                self._orphaned()
                return

    def _from_cli(self) -> bool:
        data = posix.read(self.stdin, 65536)
        if not data:
            return False
        lines, self.from_cli = _split(self.from_cli + data)
        for line in lines:
            msg = parse(line)
            if isinstance(msg, dict) and "id" in msg and isinstance(msg.get("method"), str):
                self.open[_dump_id(msg["id"])] = (msg["id"], msg["method"])
        if lines:
            try:
                self.sock.sendall(b"".join(lines))
            except OSError:
                pass  # seen as the end of the socket next
        return True

    def _from_hive(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return False
        lines, self.from_hive = _split(self.from_hive + data)
        for line in lines:
            msg = parse(line) if self.open else None
            if isinstance(msg, dict) and ("result" in msg or "error" in msg) and "id" in msg:
                self.open.pop(_dump_id(msg["id"]), None)
        write_all(self.stdout, b"".join(lines))
        return True

    def _orphaned(self) -> None:
        """The supervisor is gone: answer what is open, then every later request, until EOF."""
        sys.stderr.write("hive-mcp: the agent socket closed; answering with errors\n")
        for request_id, method in self.open.values():
            write_all(self.stdout, error_answer(request_id, method))
        self.open.clear()
        pending = self.from_cli
        while True:
            lines, pending = _split(pending)
            for line in lines:
                msg = parse(line)
                if isinstance(msg, dict) and "id" in msg and isinstance(msg.get("method"), str):
                    write_all(self.stdout, error_answer(msg["id"], msg["method"]))
            data = posix.read(self.stdin, 65536)
            if not data:
                return
            pending += data


def _split(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (with their newline) and the unfinished rest."""
    end = buffer.rfind(b"\n") + 1
    if not end:
        return [], buffer
    return buffer[:end].splitlines(keepends=True), buffer[end:]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[posix.write(fd, view) :]
        except BrokenPipeError:
            raise SystemExit(0) from None  # the CLI is gone


def main() -> None:
    """Console script ``hive-mcp`` (also run by path: ``python hive/mcp_relay.py``)."""
    path = posix.environ.get(b"HIVE_SOCKET", b"").decode()
    if not path:
        sys.stderr.write(
            "hive-mcp: HIVE_SOCKET is not set; the hive supervisor sets it when it "
            "starts an agent's turn\n"
        )
        raise SystemExit(2)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        switch_to_mcp(sock, posix.environ.get(b"HIVE_MCP_SERVER", b"").decode())
    except (OSError, RuntimeError, ValueError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        sys.stderr.write(f"hive-mcp: agent socket {path}: {reason}\n")
        raise SystemExit(1) from None
    Relay(sock).run()


if __name__ == "__main__":
    main()
