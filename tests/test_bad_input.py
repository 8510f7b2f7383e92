"""Whatever a client sends, a real supervisor answers with a clear error and keeps serving.

Each test talks raw bytes or bad requests to a real hive-supervisor over its real agent and
admin sockets, then checks that the same connection (where it should) and the daemon still
work, and that nothing refused was stored.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hive.client import HiveError, SyncClient
from hive.systemd import EXIT_CONFIG
from hive.wire import FrameDecoder, encode_frame, packb, request
from tests.hive_harness import RunningHive

MAX_BODY = 1000

CONFIG = f"""
[hive]
backoff_initial = 0.2
max_body_bytes = {MAX_BODY}

[[agent]]
name = "manager"

[[agent]]
name = "alice"

[[agent]]
name = "bob"

[[agent]]
name = "carol"
allowed_recipients = ["bob"]

[[agent]]
name = "flood"
rate_limit_per_minute = 5
"""

AGENTS = {"manager", "alice", "bob", "carol", "flood"}

MakeHive = Callable[..., RunningHive]


# --- helpers ---------------------------------------------------------------------------------


def start(make_hive: MakeHive) -> RunningHive:
    hive = make_hive(CONFIG)
    # The admin socket answers 'version' before the actor tree is up; wait for the agents.
    hive.wait_until(
        lambda: {row["name"] for row in hive.admin("list")["agents"]} == AGENTS,
        what="every agent to be up",
    )
    return hive


def header(length: int) -> bytes:
    return struct.pack(">I", length)


def error_frame(conn: SyncClient) -> dict[str, Any]:
    frame = conn.read_frame()
    assert frame.get("ok") is False, frame
    assert frame["v"] == 1
    error: dict[str, Any] = frame["error"]
    assert error["message"], "an error frame must say what went wrong"
    return {"id": frame.get("id"), **error}


def call_error(conn: SyncClient, op: str, **args: Any) -> HiveError:
    with pytest.raises(HiveError) as info:
        conn.call(op, **args)
    return info.value


def bodies(hive: RunningHive, agent: str) -> list[str]:
    return [m["body"] for m in hive.messages(agent)]


def assert_still_serving(hive: RunningHive) -> None:
    """The daemon is alive, answers both sockets, moves a message end to end, and never
    logged a traceback for anything a client sent."""
    assert hive.process.poll() is None, hive.log_tail()
    assert {row["name"] for row in hive.admin("list")["agents"]} == AGENTS
    with hive.agent("alice") as alice:
        assert alice.call("whoami") == {"name": "alice", "manager": False}
        sent = alice.call("send", to="bob", body="still here?")
    hive.wait_until(
        lambda: any(
            m["id"] == sent["id"] and m["state"] == "delivered" for m in hive.messages("bob")
        ),
        what="bob's turn to take the message",
    )
    assert "Traceback" not in hive.log_path.read_text(errors="replace"), hive.log_tail()


# --- bad frames on an agent socket -----------------------------------------------------------


def test_malformed_msgpack_gets_an_error_frame_and_the_connection_goes_on(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        alice.send_raw(header(1) + b"\xc1")
        err = error_frame(alice)
        assert err["code"] == "malformed_frame" and err["id"] == 0
        assert "msgpack" in err["message"]
        assert alice.call("whoami") == {"name": "alice", "manager": False}
        sent = alice.call("send", to="bob", body="after the bad frame")
        assert isinstance(sent["id"], int)
    assert_still_serving(hive)


def test_oversize_frame_is_discarded_unread_and_the_connection_goes_on(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    # 2 MiB really sent, made of frames that would each store a message if read.
    smuggled = encode_frame(request(77, "send", to="bob", body="smuggled"))
    size = 2 << 20
    payload = (smuggled * (size // len(smuggled) + 1))[:size]
    with hive.agent("alice") as alice:
        alice.send_raw(header(size) + payload)
        err = error_frame(alice)
        assert err["code"] == "frame_too_large" and err["id"] == 0
        assert str(size) in err["message"] and str(1 << 20) in err["message"]
        assert alice.call("whoami")["name"] == "alice"
        alice.call("send", to="bob", body="after the big frame")
    assert "smuggled" not in bodies(hive, "bob")
    assert "after the big frame" in bodies(hive, "bob")
    assert_still_serving(hive)


def test_frame_one_byte_over_the_limit_is_refused(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    size = (1 << 20) + 1
    with hive.agent("alice") as alice:
        alice.send_raw(header(size) + b"\x00" * size)
        assert error_frame(alice)["code"] == "frame_too_large"
        assert alice.call("whoami")["name"] == "alice"
    assert_still_serving(hive)


@pytest.mark.parametrize("value", [[1, 2, 3], "send", 42, None], ids=["list", "str", "int", "nil"])
def test_a_frame_that_is_not_a_map_is_refused(make_hive: MakeHive, value: object) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        alice.send_raw(encode_frame(value))
        err = error_frame(alice)
        assert err["code"] == "malformed_frame" and err["id"] == 0
        assert "must be a map" in err["message"]
        assert alice.call("whoami")["name"] == "alice"
    assert_still_serving(hive)


def test_wrong_protocol_version_is_bad_version_for_that_request(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        alice.send_raw(encode_frame({"v": 2, "id": 5, "op": "send", "args": {"to": "bob"}}))
        err = error_frame(alice)
        assert err["code"] == "bad_version" and err["id"] == 5
        assert "v1" in err["message"]
        alice.send_raw(encode_frame({"id": 6, "op": "whoami"}))
        assert error_frame(alice)["code"] == "bad_version"
        assert alice.call("whoami")["name"] == "alice"
    assert_still_serving(hive)


@pytest.mark.parametrize(
    ("frame", "reply_id", "needle"),
    [
        ({"v": 1, "op": "whoami"}, 0, "'id'"),
        ({"v": 1, "id": "x", "op": "whoami"}, 0, "'id'"),
        ({"v": 1, "id": 8}, 8, "'op'"),
        ({"v": 1, "id": 9, "op": ""}, 9, "'op'"),
        ({"v": 1, "id": 10, "op": "send", "args": ["bob", "hi"]}, 10, "'args'"),
    ],
    ids=["no-id", "string-id", "no-op", "empty-op", "list-args"],
)
def test_request_missing_id_or_op_is_bad_request(
    make_hive: MakeHive, frame: dict[str, Any], reply_id: int, needle: str
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        alice.send_raw(encode_frame(frame))
        err = error_frame(alice)
        assert err["code"] == "bad_request" and err["id"] == reply_id
        assert needle in err["message"]
        assert alice.call("whoami")["name"] == "alice"
    assert_still_serving(hive)


def test_bad_frames_and_good_requests_pipelined_in_one_write_are_answered_in_turn(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        alice.send_raw(
            encode_frame(request(1, "whoami"))
            + header(1)
            + b"\xc1"
            + encode_frame([1])
            + encode_frame({"v": 3, "id": 2, "op": "whoami"})
            + encode_frame(request(3, "whoami"))
        )
        replies = [alice.read_frame() for _ in range(5)]
    by_id = {}
    codes = []
    for r in replies:
        if r["ok"]:
            by_id[r["id"]] = r["result"]
        else:
            codes.append((r["id"], r["error"]["code"]))
    assert by_id == {1: {"name": "alice", "manager": False}, 3: {"name": "alice", "manager": False}}
    assert sorted(codes) == [(0, "malformed_frame"), (0, "malformed_frame"), (2, "bad_version")]
    assert_still_serving(hive)


@pytest.mark.parametrize(
    "cut",
    [
        header(100) + b"\x81\xa2to",  # inside a frame's payload
        b"\x00\x00",  # inside a header
        header(3 << 20) + b"\x00" * 4096,  # inside an oversize frame being skipped
        encode_frame(request(1, "recv", wait_seconds=30))[:-2],  # a real request, cut
    ],
    ids=["payload", "header", "oversize", "request"],
)
def test_frame_cut_short_by_close_leaves_the_supervisor_serving(
    make_hive: MakeHive, cut: bytes
) -> None:
    hive = start(make_hive)
    for _ in range(3):
        with hive.agent("alice") as alice:
            alice.send_raw(cut)
    with hive.agent("alice") as alice:
        assert alice.call("whoami")["name"] == "alice"
    assert hive.process.poll() is None
    # The cut is worth a log line, not a traceback.
    assert_still_serving(hive)


def test_client_that_vanishes_mid_recv_does_not_swallow_the_next_message(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    hive.admin("pause", names=["alice"])  # alice is played here, not by her turn loop
    with hive.agent("alice") as gone:
        gone.send_raw(encode_frame(request(1, "recv", wait_seconds=120)))
        # set_status goes to alice's actor after the recv: once it is answered, the recv
        # is parked there.
        assert gone.call("set_status", text="about to vanish") is not None
    sent = hive.admin("send", to="alice", body="for whoever asks next")
    # The message is pending, so a recv returns it at once; were it lost to the vanished
    # recv, this one would wait out its 10 s and come back empty.
    with hive.agent("alice", timeout=90) as alice:
        got = alice.call("recv", wait_seconds=10)
    assert [m["id"] for m in got["messages"]] == [sent["id"]]
    assert_still_serving(hive)


# --- bad requests on an agent socket ---------------------------------------------------------


def test_unknown_op_is_unknown_op_and_lists_the_known_ones(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "teleport", to="bob")
        assert err.code == "unknown_op"
        assert "teleport" in err.message and "send" in err.message
    assert_still_serving(hive)


def test_send_to_an_unknown_agent_is_unknown_agent_and_nothing_is_stored(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "send", to="zed", body="anyone there?")
    assert err.code == "unknown_agent" and "'zed'" in err.message
    assert "anyone there?" not in bodies(hive, "alice")
    assert_still_serving(hive)


@pytest.mark.parametrize("to", ["Bob", "bob smith", "../bob", "bob\n", "x" * 40, "system"])
def test_send_to_an_invalid_name_is_a_clear_invalid_name_error(
    make_hive: MakeHive, to: str
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "send", to=to, body="hello?")
    assert err.code == "invalid_name"
    assert repr(to) in err.message or f"'{to}'" in err.message
    assert "hello?" not in bodies(hive, "alice")
    assert_still_serving(hive)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"body": "no recipient"}, "'to'"),
        ({"to": "bob"}, "'body'"),
        ({"to": "bob", "body": 42}, "'body' must be str"),
        ({"to": ["bob"], "body": "hi"}, "'to' must be str"),
    ],
    ids=["no-to", "no-body", "int-body", "list-to"],
)
def test_send_with_missing_or_mistyped_arguments_is_bad_request(
    make_hive: MakeHive, args: dict[str, Any], needle: str
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "send", **args)
    assert err.code == "bad_request" and needle in err.message
    assert_still_serving(hive)


def test_body_over_the_limit_is_body_too_large_and_nothing_is_stored(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    # The limit is in bytes, not characters: 501 two-byte characters are 1002 bytes.
    too_big = ["x" * (MAX_BODY + 1), "é" * (MAX_BODY // 2 + 1)]
    with hive.agent("alice") as alice:
        for body in too_big:
            err = call_error(alice, "send", to="bob", body=body)
            assert err.code == "body_too_large"
            assert str(MAX_BODY) in err.message
        at_limit = alice.call("send", to="bob", body="y" * MAX_BODY)
    stored = {m["id"]: m["body"] for m in hive.messages("bob")}
    assert stored == {at_limit["id"]: "y" * MAX_BODY}
    assert_still_serving(hive)


@pytest.mark.parametrize("wait", [180.5, 181, 10_000, -1], ids=["just-over", "181", "huge", "neg"])
def test_recv_wait_outside_0_to_180_seconds_is_bad_request(
    make_hive: MakeHive, wait: float
) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "recv", wait_seconds=wait)
        assert err.code == "bad_request" and "180" in err.message
        err = call_error(alice, "recv", wait_seconds="soon")
        assert err.code == "bad_request"
        assert alice.call("recv", wait_seconds=0) == {"messages": []}
    assert_still_serving(hive)


def test_kick_agent_from_a_non_manager_is_manager_only(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with hive.agent("alice") as alice:
        err = call_error(alice, "kick_agent", name="bob", note="wake up")
    assert err.code == "manager_only" and "kick_agent" in err.message
    with hive.agent("manager") as manager:
        err = call_error(manager, "kick_agent", name="zed")
        assert err.code == "unknown_agent"
        err = call_error(manager, "kick_agent", name="Not Valid")
        assert err.code == "invalid_name"
        assert manager.call("kick_agent", name="bob", note="wake up") is not None
    hive.wait_until(
        lambda: any(t["kick_note"] == "wake up" and t["ended_at"] for t in hive.turns("bob")),
        what="the manager's kick to run a turn of bob",
    )
    assert_still_serving(hive)


def test_sending_outside_allowed_recipients_is_not_allowed_and_not_stored(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with hive.agent("carol") as carol:
        err = call_error(carol, "send", to="alice", body="psst, alice")
        ok = carol.call("send", to="bob", body="hello bob")
    assert err.code == "not_allowed"
    assert "'carol' may not send to 'alice'" in err.message
    assert "allowed_recipients" in err.message
    carol_mail = hive.messages("carol")
    assert [(m["id"], m["to"], m["body"]) for m in carol_mail] == [(ok["id"], "bob", "hello bob")]
    assert "psst, alice" not in bodies(hive, "alice")
    assert_still_serving(hive)


def test_rate_limit_flood_refuses_the_excess_and_stores_each_accepted_message_once(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    count = 30
    with hive.agent("flood") as flood:
        # Pipelined in one write: the daemon sees the whole flood at once.
        flood.send_raw(
            b"".join(
                encode_frame(request(i, "send", to="operator", body=f"flood {i}"))
                for i in range(1, count + 1)
            )
        )
        replies = [flood.read_frame() for _ in range(count)]
    accepted = {r["id"]: r["result"]["id"] for r in replies if r["ok"]}
    refused = {r["id"]: r["error"] for r in replies if not r["ok"]}
    assert len(accepted) + len(refused) == count
    # A fresh bucket holds a minute's worth (5); refilling one takes 12 s.
    assert len(accepted) >= 5
    assert refused, "the flood must hit the limit"
    for error in refused.values():
        assert error["code"] == "rate_limited"
        assert "5 messages per minute" in error["message"]

    stored = [m for m in hive.messages("flood") if m["from"] == "flood"]
    stored_ids = [m["id"] for m in stored]
    assert sorted(stored_ids) == sorted(accepted.values())  # each once, none refused
    assert len(set(stored_ids)) == len(stored_ids)
    assert {m["id"]: m["body"] for m in stored} == {
        message_id: f"flood {req_id}" for req_id, message_id in accepted.items()
    }
    # Other agents are not limited by flood's bucket.
    with hive.agent("alice") as alice:
        for i in range(10):
            alice.call("send", to="operator", body=f"alice {i}")
    assert_still_serving(hive)


# --- the admin socket ------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["pause", "resume", "kick", "cancel", "reset"])
def test_admin_lifecycle_verb_with_an_empty_scope_is_empty_scope(
    make_hive: MakeHive, verb: str
) -> None:
    hive = start(make_hive)
    for args in ({}, {"names": []}, {"names": None}):
        with pytest.raises(HiveError) as info:
            hive.admin(verb, **args)
        assert info.value.code == "empty_scope"
        assert "never means every agent" in info.value.message
    # Nothing happened to anyone.
    assert not any(row["paused"] for row in hive.admin("list")["agents"])
    assert_still_serving(hive)


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("pause", {"names": ["zed"]}),
        ("pause", {"names": ["alice", "zed"]}),
        ("kick", {"names": ["zed"]}),
        ("status", {"name": "zed"}),
        ("send", {"to": "zed", "body": "hi"}),
    ],
    ids=["pause", "pause-mixed", "kick", "status", "send"],
)
def test_admin_verb_on_an_unknown_agent_is_unknown_agent(
    make_hive: MakeHive, verb: str, args: dict[str, Any]
) -> None:
    hive = start(make_hive)
    with pytest.raises(HiveError) as info:
        hive.admin(verb, **args)
    assert info.value.code == "unknown_agent" and "'zed'" in info.value.message
    # A scope with one unknown name acts on nobody, not on the names it knows.
    assert hive.status("alice")["paused"] is False
    assert_still_serving(hive)


def test_admin_verb_with_an_invalid_name_is_invalid_name(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    for verb, args in [
        ("pause", {"names": ["Alice!"]}),
        ("kick", {"names": ["alice", "Bob"]}),
        ("status", {"name": "../x"}),
        ("send", {"to": "bob smith", "body": "hi"}),
    ]:
        with pytest.raises(HiveError) as info:
            hive.admin(verb, **args)
        assert info.value.code == "invalid_name"
    assert_still_serving(hive)


def test_admin_socket_survives_bad_frames_and_unknown_verbs(make_hive: MakeHive) -> None:
    hive = start(make_hive)
    with SyncClient(hive.admin_path, timeout=30) as admin:
        admin.send_raw(header(3) + b"\xc1\xc1\xc1")
        assert error_frame(admin)["code"] == "malformed_frame"
        admin.send_raw(encode_frame({"v": 0, "id": 4, "op": "list"}))
        assert error_frame(admin)["code"] == "bad_version"
        with pytest.raises(HiveError) as info:
            admin.call("destroy_everything")
        assert info.value.code == "unknown_op"
        assert admin.call("version")["protocol"] == 1
    with SyncClient(hive.admin_path, timeout=30) as admin:
        admin.send_raw(header(50) + packb({"op": "list"})[:5])  # then close
    assert_still_serving(hive)


# --- a bad hive.toml never starts a daemon ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[hive]\nrestart_intensitty = 3\n", "restart_intensitty"),
        ('[[agent]]\nname = "bob"\nmodle = "x"\n', "modle"),
        ('[[agent]]\nname = "bob"\nruntime = "gpt"\n', "runtime"),
        ('[[agent]]\nname = "bob"\n[[agent]]\nname = "bob"\n', "bob"),
        ('[[agent]]\nname = "Bob"\n', "Bob"),
        ("[hive\n", "TOML"),
    ],
    ids=["hive-key", "agent-key", "runtime", "duplicate", "name", "syntax"],
)
def test_a_bad_hive_toml_exits_2_naming_the_problem(tmp_path: Path, text: str, named: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    state = tmp_path / "state"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hive.cli.supervisor",
            "--config",
            str(bad),
            "--state-dir",
            str(state),
            "--no-dashboard",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists(), "a config error must not touch the state dir"


def test_client_that_half_closes_after_its_requests_still_gets_the_answers(
    make_hive: MakeHive,
) -> None:
    hive = start(make_hive)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(hive.agent_socket("alice")))
        # Requests answered on the spot, then EOF: the queued replies are still written.
        sock.sendall(encode_frame(request(1, "whoami")) + header(1) + b"\xc1" + encode_frame([1]))
        sock.shutdown(socket.SHUT_WR)
        decoder = FrameDecoder()
        replies: list[dict[str, Any]] = []
        while data := sock.recv(65536):
            replies += decoder.feed(data)
    assert decoder.eof() is None
    assert replies[0] == {
        "v": 1,
        "id": 1,
        "ok": True,
        "result": {"name": "alice", "manager": False},
    }
    assert [r["error"]["code"] for r in replies[1:]] == ["malformed_frame", "malformed_frame"]
    assert_still_serving(hive)
