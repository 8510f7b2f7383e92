"""The dashboard's JSON API on a real supervisor: every endpoint, bad input, and the rules
that keep it safe (token, CSRF, 127.0.0.1, a clear error when the port is taken)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from hive.store import Queries, connect, migrate
from tests.control_support import as_agent, ask
from tests.ui_harness import DashboardHive, make_dashboard, sse_events, wait_until

__all__ = ["make_dashboard"]  # the fixture, imported for pytest

CONFIG = """
[hive]
backoff_initial = 0.2
restart_intensity = 50
# These scripted agents run in the process sandbox, and the dashboard (the operator, not
# root) approves their spawns and opens their terminal: this hive allows it to.
operator_sandboxes = ["process", "bwrap"]

[[agent]]
name = "manager"

[[agent]]
name = "bob"
parent = "manager"
[[agent.script]]
match = "ping"
do = [{op = "set_status", text = "answering {from}"}, {op = "reply", body = "pong ({body})"}]
[[agent.script]]
match = "boom"
do = [{op = "crash", code = 3, message = "exploded on purpose"}]

[[agent]]
name = "slow"
parent = "manager"
[[agent.script]]
match = "*"
do = [{op = "sleep", seconds = 60}]
"""

Make = Callable[..., DashboardHive]


@pytest.fixture
def dash(make_dashboard: Make) -> DashboardHive:
    return make_dashboard(CONFIG)


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


# --- security --------------------------------------------------------------------------------


def test_operator_token_is_private_and_survives_a_restart(dash: DashboardHive) -> None:
    path = dash.hive.state_dir / "operator-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = dash.token
    assert len(token) >= 32
    dash.hive = dash.hive.restart()
    wait_until(lambda: httpx.get(f"{dash.url}/healthz").status_code == 200, what="dashboard")
    assert dash.token == token


def test_dashboard_listens_on_loopback_only(dash: DashboardHive) -> None:
    import psutil

    conns = [
        c
        for c in psutil.Process(dash.hive.process.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    listening = {(c.laddr.ip, c.laddr.port) for c in conns}
    assert ("127.0.0.1", dash.port) in listening
    assert {ip for ip, _ in listening} == {"127.0.0.1"}  # nothing on other addresses


def test_reads_need_the_operator_token(dash: DashboardHive) -> None:
    with dash.client(token=False) as c:
        r = c.get("/api/agents")
        assert r.status_code == 401 and error_code(r) == "unauthorized"
        r = c.get("/api/agents", headers={"Authorization": "Bearer not-the-token"})
        assert r.status_code == 401
        page = c.get("/")
        assert page.status_code == 302 and page.headers["location"].startswith("/login")
        assert c.get("/login").status_code == 200
        assert c.get("/api/openapi.json").status_code == 200  # the description is public


def test_login_sets_an_httponly_strict_cookie(dash: DashboardHive) -> None:
    with dash.client(token=False) as c:
        r = c.post("/login", data={"token": "wrong"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        r = c.post("/login", data={"token": dash.token, "next": "/agents/bob"})
        assert r.status_code == 302 and r.headers["location"] == "/agents/bob"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = c.get("/agents/bob")
        assert page.status_code == 200 and 'name="csrf-token"' in page.text
        assert c.get("/api/agents").status_code == 200
        # an open redirect is not offered
        r = c.post("/login", data={"token": dash.token, "next": "//evil.example/"})
        assert r.headers["location"] == "/"


def test_mutations_need_token_and_csrf_and_change_nothing_otherwise(dash: DashboardHive) -> None:
    csrf = dash.csrf
    attempts: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "unauthorized"),  # no token at all
        ({"X-CSRF-Token": csrf}, 401, "unauthorized"),  # CSRF without the token
        ({"Authorization": f"Bearer {dash.token}"}, 403, "csrf"),  # token, no CSRF
        ({"Authorization": f"Bearer {dash.token}", "X-CSRF-Token": "0" * 64}, 403, "csrf"),
        (
            {"Authorization": f"Bearer {dash.token}", "X-CSRF-Token": csrf,
             "Origin": "http://evil.example"},
            403,
            "forbidden",
        ),
    ]  # fmt: skip
    with dash.client(token=False) as c:
        for headers, status, code in attempts:
            for path, body in [
                ("/api/agents/bob/messages", {"body": "ping forged"}),
                ("/api/agents/bob/pause", {}),
                ("/api/agents/bob/kick", {}),
            ]:
                r = c.post(path, json=body, headers=headers)
                assert (r.status_code, error_code(r)) == (status, code), (headers, path)
        # a form post (what a forged cross-site form sends) with the cookie but no csrf
        c.cookies.set("hive_operator", dash.token)
        r = c.post("/api/agents/bob/pause", data={"x": "1"})
        assert r.status_code == 403
    assert dash.ok("GET", "/api/agents/bob/messages")["messages"] == []
    row = dash.row("bob")
    assert row["paused"] is False and row["last_turn"] is None


def test_csrf_may_come_as_a_form_field(dash: DashboardHive) -> None:
    with dash.client() as c:
        r = c.post("/api/agents/bob/pause", data={"csrf": dash.csrf})
        assert r.status_code == 200
    assert dash.row("bob")["paused"] is True


def test_port_taken_is_a_clear_error_at_start(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    (tmp_path / "hive.toml").write_text(CONFIG)
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "hive.cli.supervisor", "--config", str(tmp_path / "hive.toml"),
             "--state-dir", str(tmp_path / "state"), "--dashboard-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        holder.close()
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "dashboard_port" in proc.stderr  # says what to do
    assert time.monotonic() - started < 30  # retried briefly, then gave up
    # Checked before anything else opens: one line, no traceback, no socket left behind
    # (so hivectl never reached a daemon that was about to exit).
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "state" / "run" / "admin.sock").exists()
    assert not list((tmp_path / "state").rglob("*.sock"))


# --- agents ------------------------------------------------------------------------------------


def test_agents_list_and_one_row(dash: DashboardHive) -> None:
    rows = dash.ok("GET", "/api/agents")["agents"]
    assert [r["name"] for r in rows] == ["bob", "manager", "slow"]
    bob = dash.row("bob")
    assert bob["parent"] == "manager" and bob["turn_state"] == "idle"
    assert dash.api("GET", "/api/agents/nobody").status_code == 404
    r = dash.api("GET", "/api/agents/Not_A_Name")
    assert r.status_code == 400 and error_code(r) == "invalid_name"


def test_send_as_operator_and_read_the_inbox(dash: DashboardHive) -> None:
    sent = dash.ok("POST", "/api/agents/bob/messages", json={"body": "ping 1"})
    assert isinstance(sent["id"], int)

    def delivered() -> list[dict[str, Any]] | None:
        msgs = dash.ok("GET", "/api/agents/bob/messages")["messages"]
        mine = [m for m in msgs if m["id"] == sent["id"]]
        return msgs if mine and mine[0]["state"] == "delivered" else None

    msgs = wait_until(delivered, what="the ping to be delivered")
    assert any(m["body"] == "pong (ping 1)" and m["to"] == "operator" for m in msgs)
    pending = dash.ok("GET", "/api/agents/bob/messages?state=pending")["messages"]
    assert pending == []
    ops = dash.ok("GET", "/api/operator/messages")["messages"]
    assert ops[0]["from"] == "bob" and ops[0]["body"] == "pong (ping 1)"
    older = dash.ok("GET", f"/api/agents/bob/messages?before={msgs[0]['id']}&limit=1")
    assert len(older["messages"]) == 1 and older["messages"][0]["id"] < msgs[0]["id"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {}}, 400, "bad_request"),
        ({"json": {"body": ""}}, 400, "bad_request"),
        ({"json": {"body": 5}}, 400, "bad_request"),
        ({"json": ["body"]}, 400, "bad_request"),
        ({"content": b"not json", "headers": {"Content-Type": "application/json"}}, 400, None),
        ({"json": {"body": "x" * 300_000}}, 413, "body_too_large"),
    ],
)
def test_send_refuses_bad_input(
    dash: DashboardHive, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    r = dash.api("POST", "/api/agents/bob/messages", **kwargs)
    assert r.status_code == status, r.text
    if code:
        assert error_code(r) == code
    assert dash.ok("GET", "/api/agents/bob/messages")["messages"] == []


def test_send_to_unknown_agent_is_404(dash: DashboardHive) -> None:
    r = dash.api("POST", "/api/agents/nobody/messages", json={"body": "hi"})
    assert r.status_code == 404 and error_code(r) == "unknown_agent"


def test_pause_resume_kick_reset_restart(dash: DashboardHive) -> None:
    assert dash.ok("POST", "/api/agents/bob/pause") == {"agent": "bob"}
    assert dash.row("bob")["paused"] is True
    dash.ok("POST", "/api/agents/bob/pause")  # idempotent
    dash.ok("POST", "/api/agents/bob/resume")
    assert dash.row("bob")["paused"] is False
    assert "queued" in dash.ok("POST", "/api/agents/bob/kick", json={"note": "wake up"})
    wait_until(lambda: dash.row("bob")["last_turn"], what="the kicked turn")
    assert dash.ok("GET", "/api/agents/bob/turns")["turns"][0]["kick_note"] == "wake up"
    assert dash.ok("POST", "/api/agents/bob/cancel") == {"agent": "bob", "cancelled": False}
    dash.ok("POST", "/api/agents/bob/reset")
    dash.ok("POST", "/api/agents/bob/restart")
    wait_until(
        lambda: len(dash.ok("GET", "/api/agents/bob/turns")["turns"]) == 2,
        what="restart to kick a turn",
    )
    assert dash.api("POST", "/api/agents/bob/explode").status_code == 404
    assert dash.api("POST", "/api/agents/nobody/pause").status_code == 404
    r = dash.api("POST", "/api/agents/bob/kick", json={"note": 7})
    assert r.status_code == 400


def test_cancel_stops_a_running_turn(dash: DashboardHive) -> None:
    dash.ok("POST", "/api/agents/slow/messages", json={"body": "take your time"})
    wait_until(lambda: dash.row("slow")["turn_id"] is not None, what="slow's turn to start")
    assert dash.ok("POST", "/api/agents/slow/cancel")["cancelled"] is True
    row = wait_until(lambda: dash.row("slow")["last_turn"], what="the cancelled turn to end")
    assert row["exit_class"] == "cancelled"


def test_turns_and_transcript(dash: DashboardHive) -> None:
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "ping 2"})
    wait_until(lambda: dash.row("bob")["last_turn"], what="bob's turn")
    [turn] = dash.ok("GET", "/api/agents/bob/turns?limit=5")["turns"]
    assert turn["exit_class"] == "ok"
    events = dash.ok("GET", f"/api/turns/{turn['id']}/events")["events"]
    kinds = [e["kind"] for e in events]
    assert "tool_call" in kinds and "tool_result" in kinds
    assert any(e["data"].get("name") == "send" for e in events if e["kind"] == "tool_call")
    assert dash.ok("GET", "/api/turns/999999/events")["events"] == []
    assert dash.api("GET", "/api/turns/abc/events").status_code == 404
    for bad in ("limit=0", "limit=100000", "limit=x"):
        r = dash.api("GET", f"/api/agents/bob/turns?{bad}")
        assert r.status_code == 400 and error_code(r) == "bad_request"


def test_events_and_log_after_a_crash(dash: DashboardHive) -> None:
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "boom"})
    events = wait_until(
        lambda: dash.ok("GET", "/api/events?agent=bob")["events"], what="a crash event"
    )
    assert events[0]["kind"] == "crash" and events[0]["agent"] == "bob"
    assert dash.ok("GET", "/api/events?limit=1")["events"]
    log = wait_until(
        lambda: (lambda d: d if d["lines"] else None)(dash.ok("GET", "/api/agents/bob/log")),
        what="bob's log",
    )
    assert log["source"] in ("file", "journald")
    assert any("exploded on purpose" in line for line in log["lines"])
    assert dash.api("GET", "/api/agents/bob/log?lines=0").status_code == 400
    assert dash.api("GET", "/api/events?agent=BAD").status_code == 400
    dash.ok("POST", "/api/agents/bob/pause")  # stop the crash loop


def test_log_follow_streams_new_lines(dash: DashboardHive) -> None:
    got: list[dict[str, Any]] = []
    cursor = dash.ok("GET", "/api/agents/bob/log")["cursor"]  # following starts after it

    def follow() -> None:
        got.extend(
            sse_events(
                dash, f"/api/agents/bob/log/stream?after={cursor}",
                lambda evs: any("exploded" in line for ev in evs for line in ev["lines"]),
                timeout=30,
            )
        )  # fmt: skip

    reader = threading.Thread(target=follow)
    reader.start()
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "boom"})
    reader.join(timeout=40)
    assert any("exploded on purpose" in line for ev in got for line in ev["lines"])
    dash.ok("POST", "/api/agents/bob/pause")


# --- live stream ---------------------------------------------------------------------------------


def test_stream_starts_with_a_snapshot_then_changes(dash: DashboardHive) -> None:
    got: list[dict[str, Any]] = []

    def read() -> None:
        got.extend(
            sse_events(
                dash,
                "/api/stream?kinds=agent,message",
                lambda evs: any(e["kind"] == "message" for e in evs),
            )
        )

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: got or reader.is_alive(), what="reader")
    time.sleep(0.5)
    dash.ok("POST", "/api/agents/bob/messages", json={"body": "ping live"})
    reader.join(timeout=30)
    assert got[0]["kind"] == "snapshot"
    assert {r["name"] for r in got[0]["items"]["agent"]} == {"bob", "manager", "slow"}
    assert "message" not in got[0]["items"]  # only keyed kinds are in a snapshot
    later = got[1:]
    assert all(e["kind"] in ("agent", "message") for e in later)
    seqs = [e["seq"] for e in later]
    assert seqs == sorted(seqs) and seqs[0] > got[0]["seq"]
    assert later[-1]["data"]["body"] == "ping live"


def test_stream_refuses_bad_kinds(dash: DashboardHive) -> None:
    r = dash.api("GET", "/api/stream?kinds=agent,DROP%20TABLE")
    assert r.status_code == 400 and error_code(r) == "bad_request"
    assert dash.api("GET", "/api/stream?backlog=1").status_code == 400


def test_shutdown_ends_open_streams_promptly(dash: DashboardHive) -> None:
    ended = threading.Event()

    def read() -> None:
        try:
            sse_events(dash, "/api/stream", lambda evs: False, timeout=60)
        except httpx.HTTPError:
            pass
        ended.set()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    assert dash.hive.terminate(timeout=30) == 0
    assert ended.wait(5)
    assert time.monotonic() - started < 10


# --- stats, model, approvals ---------------------------------------------------------------------


def test_stats_after_turns(dash: DashboardHive) -> None:
    for i in range(3):
        dash.ok("POST", "/api/agents/bob/messages", json={"body": f"ping {i}"})
    wait_until(
        lambda: len(dash.ok("GET", "/api/stats?agent=bob&keys=turn.duration")["series"]
                    .get("turn.duration", [])) >= 1
        and dash.row("bob")["inbox_depth"] == 0,
        what="stats rows for bob's turns",
    )  # fmt: skip
    data = dash.ok("GET", "/api/stats?agent=bob&since=-600")
    series, summary = data["series"], data["summary"]
    turns = summary["turns"]
    assert turns >= 1 and len(series["turn.duration"]) == turns
    assert summary["exits"]["ok"] == turns and summary["duration_p50"] > 0
    assert summary["tools"]["send"] >= 3 and summary["tools"]["set_status"] >= 1
    assert summary["sent"]["operator"] >= 3 and summary["received"]["operator"] >= 3
    assert "inbox_depth" in series and summary["inbox_depth_max"] >= 1
    assert summary["seconds_since_last_turn"] >= 0
    only = dash.ok("GET", "/api/stats?agent=bob&keys=tool.*")["series"]
    assert set(only) == {"tool.send", "tool.set_status"}
    future = dash.ok("GET", f"/api/stats?agent=bob&since={time.time() + 3600}")
    assert future["series"] == {} and future["summary"]["turns"] == 0
    everyone = dash.ok("GET", "/api/stats?keys=turn.duration")
    assert everyone["agent"] is None and everyone["series"]["turn.duration"]
    for bad in ("since=yesterday", "keys=a%20b", "keys=*x", "agent=BAD"):
        r = dash.api("GET", f"/api/stats?{bad}")
        assert r.status_code == 400, bad


def test_stats_retention_prunes_old_and_excess_rows(tmp_path: Path) -> None:
    from hive.actors.stats import prune

    conn: apsw.Connection = connect(tmp_path / "hive.db")
    migrate(conn)
    q = Queries(conn)
    now = time.time()
    q.insert_stats([("a", now - 10 * 86400, "turn.duration", 1.0)] * 5)
    q.insert_stats([("a", now - i, "turn.duration", float(i)) for i in range(20)])
    assert prune(q, now, retention=86400, max_rows=15) == 10
    rows = conn.execute("SELECT ts FROM stats ORDER BY ts").fetchall()
    assert len(rows) == 15 and min(float(str(r[0])) for r in rows) >= now - 15


def test_model_get_and_set(dash: DashboardHive) -> None:
    assert dash.ok("GET", "/api/model?agent=bob") == {
        "agent": "bob",
        "model": "claude-sonnet-4-5",
    }
    assert dash.api("GET", "/api/model?agent=nobody").status_code == 404
    assert dash.api("GET", "/api/model").status_code == 400
    r = dash.api("POST", "/api/model", json={"agent": "bob", "model": "bad model; rm"})
    assert r.status_code == 400
    r = dash.api("POST", "/api/model", json={"agent": "bob", "model": "claude-opus-4-5"})
    if dash.ok("GET", "/api/session")["features"]["set_model"]:
        assert r.status_code == 200
        wait_until(lambda: dash.row("bob")["active_model"] == "claude-opus-4-5", what="model")
    else:
        assert r.status_code == 501 and error_code(r) == "not_available"


def test_the_dashboard_and_the_admin_socket_answer_alike(dash: DashboardHive) -> None:
    """One admin API: the same verb behind both, so the same checks and error messages."""
    from hive.client import HiveError

    bad = "bad model; rm"
    r = dash.api("POST", "/api/model", json={"agent": "bob", "model": bad})
    with pytest.raises(HiveError) as info:
        dash.hive.admin("model", names=["bob"], model=bad)
    assert r.status_code == 400 and error_code(r) == info.value.code == "bad_request"
    assert r.json()["error"]["message"] == info.value.message
    # A stop on the dashboard is the stop verb: its reply is the agent's part of the verb's.
    via_socket = dash.hive.admin("stop", names=["bob"])["agents"]["bob"]
    assert dash.ok("POST", "/api/agents/bob/stop") == via_socket
    dash.ok("POST", "/api/agents/bob/start")


def test_approvals_and_questions_endpoints(dash: DashboardHive) -> None:
    listing = dash.ok("GET", "/api/approvals")
    assert set(listing) >= {"approvals", "questions", "drafts"}
    features = dash.ok("GET", "/api/session")["features"]
    assert dash.api("POST", "/api/approvals/abc/approve").status_code == 400
    assert dash.api("POST", "/api/approvals/1/maybe").status_code == 404
    assert dash.api("POST", "/api/questions/1/answer", json={}).status_code == 400
    r = dash.api("POST", "/api/approvals/424242/approve")
    if features["approvals"]:
        assert r.status_code in (404, 409)  # no such approval: refused, never "everything"
    else:
        assert r.status_code == 501


def test_openapi_describes_every_route() -> None:
    from hive.ui.app import create_app
    from hive.ui.openapi import openapi_document

    app = create_app(None)  # type: ignore[arg-type]
    doc = openapi_document(app)
    assert doc["openapi"].startswith("3.") and "/api/stream" in doc["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            op = doc["paths"][path][method.lower()]
            assert op["summary"], (method, path)  # every view says what it does


def test_openapi_schemas_are_the_models_requests_are_parsed_with() -> None:
    from hive.status import STATUS_FIELDS
    from hive.ui.app import create_app
    from hive.ui.calls import _STATUS
    from hive.ui.openapi import openapi_document

    doc = openapi_document(create_app(None))  # type: ignore[arg-type]
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    # the status row: the record the Agent actor publishes
    assert list(schemas["AgentStatus"]["properties"]) == list(STATUS_FIELDS)
    one = paths["/api/agents/{name}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert one["schema"] == {"$ref": "#/components/schemas/AgentStatus"}
    # a body: the model the handler validates with (required fields, limits)
    send = paths["/api/agents/{name}/messages"]["post"]["requestBody"]
    assert send["required"] and send["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendBody"
    }
    assert schemas["AnswerBody"]["properties"]["answer"]["maxLength"] == 64_000
    assert schemas["SendBody"]["required"] == ["body"]
    # a query string: its bounds
    [limit] = [p for p in paths["/api/agents/{name}/turns"]["get"]["parameters"]
               if p["name"] == "limit"]  # fmt: skip
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    # errors: every code of the one code -> status table, under its status
    responses = paths["/api/model"]["post"]["responses"]
    for code, status in _STATUS.items():
        assert code in responses[str(status)]["description"]


def test_vendored_libraries_are_served(dash: DashboardHive) -> None:
    with dash.client(token=False) as c:
        for name in ("uPlot.iife.min.js", "xterm.js", "addon-fit.js", "xterm.css"):
            r = c.get(f"/vendor/{name}")
            assert r.status_code == 200 and len(r.content) > 1000, name
        assert c.get("/vendor/%2e%2e/package.json").status_code == 404
        assert c.get("/vendor/package.json").status_code == 404


# --- units: bind, journald lines, a slow stream ---------------------------------------------


def test_bind_retries_until_the_port_is_free_then_gives_up_clearly() -> None:
    from hive.ui.server import DashboardBindError, bind_socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    threading.Timer(0.6, holder.close).start()  # the previous owner goes away meanwhile
    sock = bind_socket("127.0.0.1", port, attempts=20, delay=0.1)
    try:
        assert sock.getsockname()[1] == port
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with pytest.raises(DashboardBindError, match="Address already in use"):
            bind_socket("127.0.0.1", port, attempts=2, delay=0.01)
    finally:
        sock.close()
    with pytest.raises(DashboardBindError, match="dashboard_host"):
        bind_socket("192.0.2.1", port, attempts=1)  # not an address of this host


def test_journald_lines_are_read_from_json() -> None:
    from hive.logtail import entry_lines, tail_lines

    def shown(entry: dict[str, Any]) -> list[str]:
        return [line.split(" ", 1)[1] for line in entry_lines(entry)]  # without the time

    assert shown({"MESSAGE": "hello", "AGENT": "bob"}) == ["hive: hello"]
    assert shown({"MESSAGE": [104, 105, 255], "HIVE_STREAM": "stderr", "TURN": "4"}) == [
        "turn=4 hi\ufffd"
    ]
    assert shown({"OTHER": 1}) == ["hive: "]
    assert tail_lines(Path("/nonexistent/agent.log"), 10) == ([], 0)


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    from hive.logtail import tail_lines

    log = tmp_path / "agent.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    lines, size = tail_lines(log, 3)
    assert lines == ["line 99997", "line 99998", "line 99999"] and size == log.stat().st_size


async def test_a_stream_that_falls_behind_gets_a_gap_and_ends() -> None:
    from types import SimpleNamespace

    import trio

    from hive.actors.base import Directory
    from hive.io.bridge import IoBridge
    from hive.ui.sse import EventStream

    async with trio.open_nursery() as nursery:
        bridge = IoBridge(trio.lowlevel.current_trio_token(), nursery)
        ctx = SimpleNamespace(io=bridge, refs=Directory())
        stream = EventStream(ctx, None, backlog=10)  # type: ignore[arg-type]
        for seq in range(1, 26):  # nobody reads: 10 are queued, 15 dropped
            stream.feed._emit({"seq": seq, "kind": "agent", "key": "a", "data": {}})
        received: list[dict[str, Any]] = []
        events = stream.events()
        async for chunk in events:
            for line in chunk.decode().splitlines():
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
            if len(received) == 10:
                stream.feed._emit({"seq": 26, "kind": "agent", "key": "a", "data": {}})
        assert [r["seq"] for r in received] == [*range(1, 11), 26]
        assert received[-1]["kind"] == "gap" and received[-1]["dropped"] == 15
        assert stream.closed  # ended: the browser reconnects for a fresh snapshot
        nursery.cancel_scope.cancel()


def test_approve_deny_answer_and_cancel_through_the_api(dash: DashboardHive) -> None:
    if not dash.ok("GET", "/api/session")["features"]["approvals"]:
        pytest.fail("the control plane is not in this hive")
    with dash.hive.agent("manager") as manager:
        first = manager.call("request_spawn", name="scout")
        second = manager.call("request_spawn", name="spare")
    listed = dash.ok("GET", "/api/approvals")["approvals"]
    assert {a["id"] for a in listed} == {first["id"], second["id"]}
    assert dash.ok("POST", f"/api/approvals/{first['id']}/approve")["status"] == "approved"
    wait_until(lambda: dash.api("GET", "/api/agents/scout").status_code == 200, what="scout")
    again = dash.api("POST", f"/api/approvals/{first['id']}/approve")
    assert again.status_code == 409  # resolved exactly once
    denied = dash.ok("POST", f"/api/approvals/{second['id']}/deny", json={"reason": "enough"})
    assert denied["status"] == "denied"
    assert dash.api("GET", "/api/agents/spare").status_code == 404

    answers: dict[str, Any] = {}

    def ask(key: str, question: str) -> threading.Thread:
        def run() -> None:
            with dash.hive.agent("bob", timeout=120) as bob:
                answers[key] = bob.call("ask_operator", question=question, ttl_seconds=300)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    dash.ok("POST", "/api/agents/bob/pause")  # bob is played by this test
    asking = ask("deploy", "Deploy?")
    [q] = wait_until(lambda: dash.ok("GET", "/api/approvals")["questions"], what="a question")
    assert q["question"] == "Deploy?" and q["agent"] == "bob"
    assert (
        dash.api("POST", f"/api/questions/{q['id']}/answer", json={"answer": 5}).status_code == 400
    )
    dash.ok("POST", f"/api/questions/{q['id']}/answer", json={"answer": "yes"})
    asking.join(timeout=30)
    assert answers["deploy"]["status"] == "answered" and answers["deploy"]["answer"] == "yes"

    asking = ask("other", "Something else?")
    [q] = wait_until(lambda: dash.ok("GET", "/api/approvals")["questions"], what="a question")
    dash.ok("POST", f"/api/questions/{q['id']}/cancel")
    asking.join(timeout=30)
    assert answers["other"]["status"] == "cancelled"


def test_many_streams_each_get_a_snapshot_and_every_change(dash: DashboardHive) -> None:
    results: dict[int, list[dict[str, Any]]] = {}

    def read(i: int, kinds: str) -> None:
        results[i] = sse_events(
            dash,
            f"/api/stream?kinds={kinds}",
            lambda evs: (
                sum(e["kind"] == "message" for e in evs) >= 2
                or (kinds == "agent" and any(e.get("data", {}).get("inbox_depth") for e in evs))
            ),
        )

    # streams with the same kinds share one hub subscription; another kind set has its own
    readers = [threading.Thread(target=read, args=(i, "agent,message")) for i in range(4)]
    readers.append(threading.Thread(target=read, args=(4, "agent")))
    for t in readers:
        t.start()
    time.sleep(1.0)
    dash.ok("POST", "/api/agents/slow/messages", json={"body": "one"})
    dash.ok("POST", "/api/agents/slow/messages", json={"body": "two"})
    for t in readers:
        t.join(timeout=30)
    for i in range(4):
        evs = results[i]
        assert evs[0]["kind"] == "snapshot"
        assert [e["data"]["body"] for e in evs if e["kind"] == "message"] == ["one", "two"]
    assert all(e["kind"] in ("snapshot", "agent") for e in results[4])
    dash.ok("POST", "/api/agents/slow/cancel")


# --- a StateHub restart -----------------------------------------------------------------------


def test_pending_approvals_and_questions_outlive_a_hub_restart(make_dashboard: Make) -> None:
    dash = make_dashboard(CONFIG, env={"HIVE_FAULT_INJECTION": "1"})
    hive = dash.hive
    request = as_agent(hive, "manager", "schedule_prompt", agent="bob", at="+3600", text="x")
    asked = ask(hive, "bob", question="Ship it?", options=["yes", "no"], ttl_seconds=600)

    def listed() -> tuple[list[int], list[str]] | None:
        r = dash.api("GET", "/api/approvals")
        if r.status_code != 200:
            return None  # the hub is between lives
        body = r.json()
        ids = [a["id"] for a in body["approvals"]]
        questions = [q["description"] for q in body["questions"]]
        return (ids, questions) if ids and questions else None

    assert wait_until(listed, what="both items listed") == ([request["id"]], ["Ship it?"])
    hive.admin("inject_fault", target="hub")
    hive.wait_until(lambda: "restarting hub" in hive.log_tail(200), what="the hub's restart")
    # The new hub starts empty; the approvals actor must publish its items again.
    assert wait_until(listed, what="the items back after the restart") == (
        [request["id"]],
        ["Ship it?"],
    )
    events = sse_events(dash, "/api/stream?kinds=approval,question", lambda ev: len(ev) >= 1)
    snapshot = events[0]
    assert snapshot["kind"] == "snapshot"
    assert [a["id"] for a in snapshot["items"]["approval"]] == [request["id"]]
    assert [q["description"] for q in snapshot["items"]["question"]] == ["Ship it?"]
    # The question still works: answering it reaches the asker.
    qid = hive.admin("pending")["pending"][-1]["id"]
    hive.admin("answer", id=qid, answer="yes")
    assert asked.result()["answer"] == "yes"
