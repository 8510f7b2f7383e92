"""The hive's MCP server inside the supervisor, reached through the relay (hive/mcp_relay.py)
on a real daemon's agent sockets: identity is the socket, messages a recv returned are
acknowledged only once its answer was written to the relay, bad input gets clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from hive.client import HiveError, SyncClient
from hive.wire import encode_frame, request
from tests.hive_harness import RunningHive, wait_until
from tests.mcp_lines import RelayClient, relay_argv, text_of

MakeHive = Callable[..., RunningHive]

# alice is paused: the tests play her MCP client themselves.
CONFIG = """
[[agent]]
name = "manager"
[[agent]]
name = "alice"
[[agent]]
name = "bob"
"""


def start(make_hive: MakeHive) -> RunningHive:
    hive = make_hive(CONFIG)
    hive.admin("pause", names=["alice", "bob", "manager"])
    return hive


def state_of(hive: RunningHive, msg_id: int) -> str:
    with hive.db() as db:
        rows = list(db.execute("SELECT state FROM messages WHERE id = ?", (msg_id,)))
    return str(rows[0][0])


def test_the_tools_act_as_the_agent_whose_socket_the_relay_is_on(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with RelayClient(hive.agent_socket("alice")) as mcp:
        init = mcp.initialize()["result"]
        assert "You are an agent in a hive" in init["instructions"]
        tools = {t["name"] for t in mcp.request("tools/list")["result"]["tools"]}
        assert {"send", "recv", "ask_operator", "set_status"} <= tools
        assert "kick_agent" not in tools

        sent = mcp.call_tool("send", {"to": "bob", "body": "hello from the pool"})
        assert not sent.get("isError") and "sent to bob as message #" in text_of(sent)
        assert mcp.call_tool("set_status", {"text": "testing"})["content"]
        refused = mcp.call_tool("kick_agent", {"name": "bob"})
        assert refused["isError"]
    [msg] = [m for m in hive.messages("bob") if m["body"] == "hello from the pool"]
    assert msg["from"] == "alice"  # the socket said who it was; no argument could
    assert hive.status("alice")["status_text"] == "testing"


def test_the_manager_gets_its_tools_and_they_reach_the_supervisor(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with RelayClient(hive.agent_socket("manager")) as mcp:
        mcp.initialize()
        tools = {t["name"] for t in mcp.request("tools/list")["result"]["tools"]}
        assert {"kick_agent", "request_spawn", "schedule_prompt"} <= tools
        kicked = mcp.call_tool("kick_agent", {"name": "bob", "note": "wake up"})
        assert text_of(kicked) == "kicked 'bob'"
        unknown = mcp.call_tool("kick_agent", {"name": "nobody"})
        assert unknown["isError"] and "[unknown_agent]" in text_of(unknown)


def test_a_recv_is_acknowledged_once_its_answer_was_written(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    msg_id = hive.admin("send", to="alice", body="the build is green")["id"]
    with RelayClient(hive.agent_socket("alice")) as mcp:
        mcp.initialize()
        got = mcp.call_tool("recv", {"wait_seconds": 0})
        assert f"[message #{msg_id} from operator]" in text_of(got)
        hive.wait_until(lambda: state_of(hive, msg_id) == "delivered", what="the ack")


def test_a_recv_answer_that_cannot_be_written_leaves_the_message_pending(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    msg_id = hive.admin("send", to="alice", body="do not lose me")["id"]
    sock = mcp_socket(hive, "alice")
    lines = sock.makefile("rb")
    sock.sendall(rpc(1, "initialize", protocolVersion="2025-06-18", capabilities={},
                     clientInfo={"name": "t", "version": "1"}))  # fmt: skip
    assert json.loads(lines.readline())["id"] == 1
    sock.sendall(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    # Reading shut: the supervisor's write of the answer fails (EPIPE), as when the relay
    # dies with the answer on its way.
    sock.shutdown(socket.SHUT_RD)
    sock.sendall(rpc(2, "tools/call", name="recv", arguments={"wait_seconds": 0}))
    wait_until(lambda: closed_by_peer(sock), what="the supervisor to end the session")
    sock.close()
    assert state_of(hive, msg_id) == "pending"
    with hive.agent("alice") as again:  # given back: the next reader gets it
        result = again.call("recv", wait_seconds=30)
    assert [m["id"] for m in result["messages"]] == [msg_id]


def test_bad_lines_get_json_rpc_errors_and_the_session_goes_on(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with RelayClient(hive.agent_socket("alice")) as mcp:
        mcp.initialize()
        mcp.write(b"this is not json\n")
        assert mcp.read()["error"]["code"] == -32700  # parse error
        unknown = mcp.request("no/such/method")
        assert unknown["error"]["code"] == -32601
        bad_args = mcp.call_tool("recv", {"wait_seconds": 999})
        assert bad_args["isError"] and "180" in text_of(bad_args)
        assert mcp.call_tool("set_status", {"text": "still here"})["content"]


def test_data_sent_before_the_switch_is_answered_closes_only_that_connection(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(hive.agent_socket("alice")))
    sock.settimeout(30)
    frame = encode_frame(request(1, "mcp"))
    sock.sendall(frame + rpc(1, "tools/list"))  # one write: MCP before the reply came
    data = b""
    while chunk := sock.recv(65536):  # the reply to mcp, then the end
        data += chunk
    assert len(data) == len(encode_frame({"v": 1, "id": 1, "ok": True, "result": {"mode": "mcp"}}))
    sock.close()
    with RelayClient(hive.agent_socket("alice")) as mcp:  # the socket serves on
        mcp.initialize()


def test_an_unknown_pooled_server_is_refused_clearly(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with SyncClient(hive.agent_socket("alice"), timeout=30) as c, pytest.raises(HiveError) as no:
        c.request("mcp", server="nope")
    assert no.value.code == "unknown_server"
    proc = subprocess.run(
        relay_argv(),
        env={"HIVE_SOCKET": str(hive.agent_socket("alice")), "HIVE_MCP_SERVER": "nope"},
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"[unknown_server]" in proc.stderr and b"'nope'" in proc.stderr


# --- helpers --------------------------------------------------------------------------------


def rpc(req_id: int, method: str, **params: Any) -> bytes:
    message = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


def mcp_socket(hive: RunningHive, agent: str) -> socket.socket:
    """A raw connection to ``agent``'s socket, switched to MCP mode."""
    client = SyncClient(hive.agent_socket(agent), timeout=30)
    assert client.request("mcp") == {"mode": "mcp"}
    return client._sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        sock.sendall(b'{"jsonrpc":"2.0","method":"notifications/progress"}\n')
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False
