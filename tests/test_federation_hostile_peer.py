"""A hostile or broken peer hive (issue 13): what another hive sends is input.

A real nats-server with the per-hive users of docs/federation.md, two real supervisors
(alpha with its dashboard, beta), and a forged hive (tests/forged_hive.py): a client that
holds the NATS user "forged" and nothing else. It answers alpha's operator verbs with
malformed replies (not msgpack, not a map, wrong types, too large, an error of the wrong
shape, the reply of another verb, no reply at all) and writes malformed rows into its key
of the fleet bucket. Each case is forged's own clear error in `hivectl` and the HTTP API,
never a failure of the whole fleet view; beta stays correct beside it; nothing forged
sent lands in alpha's store. (That forged cannot publish as another hive, read its stream,
overwrite its row or ask as it: tests/test_federation_security.py; here, that it cannot
listen to another hive's operator requests to answer them.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hive.federation.fleet import REMOTE_TIMEOUT
from hive.federation.peer_input import MAX_PEER_BYTES, MAX_ROW_AGENTS
from hive.federation.permissions import authorization
from hive.wire import packb, unpackb
from tests.control_support import hivectl
from tests.federation_support import hive_config, nats
from tests.forged_hive import Answer, ForgedHive
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer
from tests.ui_harness import DashboardHive, make_dashboard, wait_until

__all__ = ["make_dashboard", "nats"]  # the fixtures

PASSWORDS = {"alpha": "alpha-pw", "beta": "beta-pw", "forged": "forged-pw"}
# Larger messages than NATS's default, so a peer can try more than hive takes (1 MiB).
NATS_EXTRA = authorization(PASSWORDS) + "\nmax_payload: 4MB\n"
STATUS = {"bad_reply": 502, "unknown_agent": 404, "hive_timeout": 504}
# Tables a remote verb or a fleet row might write if forged input leaked into the store.
WATCHED = ("messages", "approvals", "events", "attention", "agents", "fed_outbox", "fed_links_in",
           "fed_links_out")  # fmt: skip


def _hive_toml(name: str, url: str, agents: list[str], extra: str = "") -> str:
    creds = f'user = "{name}"\npassword = "{PASSWORDS[name]}"\n{extra}'
    return hive_config(name, url, agents, federation_extra=creds)


def _good_row(**more: Any) -> bytes:
    row = {"agents": [{"name": "bob", "turn_state": "idle"}], "questions": 1,
           "connected": True, "rtt": 0.001, "lag": 0, "outbox": {}, "ts": time.time()}  # fmt: skip
    return packb({**row, **more})


def _strict_json(text: str) -> Any:
    """JSON as a browser parses it: NaN and Infinity are not JSON (Python's reader takes
    them, the page's fetch does not)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON reply")

    return json.loads(text, parse_constant=refuse)


def _fleet(alpha: DashboardHive) -> dict[str, dict[str, Any]]:
    r = alpha.api("GET", "/api/fleet")
    assert r.status_code == 200, r.text
    return {h["hive"]: h for h in _strict_json(r.text)["hives"]}


def _start(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    make_dashboard: Callable[..., DashboardHive],
) -> tuple[DashboardHive, RunningHive, ForgedHive]:
    """alpha (dashboard) and beta (operators: alpha) on one NATS; forged's row in view."""
    url = nats(extra=NATS_EXTRA).url
    alpha = make_dashboard(_hive_toml("alpha", url, ["alice"]), name="alpha")
    beta = make_hive(_hive_toml("beta", url, ["bob"], 'operators = ["alpha"]\n'), name="beta")
    alpha.hive.wait_until(lambda: "beta" in _fleet(alpha), what="beta in alpha's fleet view")
    forged = ForgedHive.start(url, "forged", PASSWORDS["forged"])
    forged.put_row(_good_row())
    alpha.hive.wait_until(
        lambda: _fleet(alpha).get("forged", {}).get("questions") == 1,
        what="forged's row in alpha's fleet view",
    )
    return alpha, beta, forged


def _store_counts(hive: RunningHive) -> dict[str, int]:
    with hive.db() as db:
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchall()[0][0]) for t in WATCHED}


def _peers_fine(alpha: DashboardHive) -> None:
    """beta, the real peer, is shown and acted on as before, beside whatever forged did."""
    beta = _fleet(alpha)["beta"]
    assert [a["name"] for a in beta["agents"]] == ["bob"] and "error" not in beta
    status = hivectl(alpha.hive, "status", "bob@beta")
    assert status.returncode == 0 and status.json()["name"] == "bob", status.stderr


# --- replies to operator verbs ------------------------------------------------------------

# What each verb answers, handed to another verb ("the reply of another verb").
OTHER_VERBS_RESULT = {
    "pause": {"questions": [], "total": 0},
    "kick": {"id": 7, "status": "answered"},
    "status": {"agents": {"bob": {}}},
    "answer": {"name": "bob", "turn_state": "idle"},
    "questions": {"agents": {"bob": {}}},
}

# A well-formed result of each verb (a case adds one bad field to it).
FINE_RESULT: dict[str, dict[str, Any]] = {
    "pause": {"agents": {"bob": {"paused": True}}},
    "kick": {"agents": {"bob": {}}},
    "status": {"name": "bob", "turn_state": "idle"},
    "answer": {"id": 7, "status": "answered"},
    "questions": {"questions": [], "total": 0},
}


def _result(value: Any) -> Answer:
    return lambda op, args: packb({"result": value})


REPLIES: list[tuple[str, Answer, str, str]] = [
    ("not msgpack", lambda op, args: b"\xc1\xc1 garbage", "bad_reply", "not msgpack"),
    ("not a map", lambda op, args: packb(["result", "bob"]), "bad_reply", "not a map but list"),
    (
        "wrong field types",
        _result({"agents": "bob", "name": 5, "status": 1, "questions": "none", "total": "x"}),
        "bad_reply",
        "no per-agent results",
    ),
    (
        "oversized",
        _result({"agents": {"bob": {"note": "x" * (MAX_PEER_BYTES + 1000)}}}),
        "bad_reply",
        f"over the limit of {MAX_PEER_BYTES}",
    ),
    (
        "error not a map",
        lambda op, args: packb({"error": "it broke"}),
        "bad_reply",
        "an error without a code and a message",
    ),
    (
        "error code not a code",
        lambda op, args: packb({"error": {"code": "Bad Code!\n", "message": 5}}),
        "bad_reply",
        "an error without a code and a message",
    ),
    (
        "the reply of another verb",
        lambda op, args: packb({"result": OTHER_VERBS_RESULT[op]}),
        "bad_reply",
        "no per-agent results",
    ),
    (
        "results keyed by a number",
        _result({"agents": {1: {}, "bob": {}}}),
        "bad_reply",
        "results for other agents than those asked",
    ),
    (
        "a number that is not finite",
        lambda op, args: packb({"result": {**FINE_RESULT[op], "at": float("nan")}}),
        "bad_reply",
        "a number that is not finite",
    ),
    (
        "its own error (well formed: passed on)",
        lambda op, args: packb({"error": {"code": "unknown_agent", "message": "no agent 'bob'"}}),
        "unknown_agent",
        "hive 'forged': no agent 'bob'",
    ),
    ("no reply at all", lambda op, args: None, "hive_timeout", "did not answer within"),
]

PANEL_CODE = {"no reply at all": "timeout", "a number that is not finite": ""}


def _ask_every_way(alpha: DashboardHive) -> dict[str, tuple[int, str, str]]:
    """Every remote verb path at once, as (exit code or HTTP status, code, message)."""

    def cli(*argv: str) -> Callable[[], tuple[int, str, str]]:
        def run() -> tuple[int, str, str]:
            done = hivectl(alpha.hive, *argv)
            return done.returncode, done.stderr.rsplit("[", 1)[-1].strip(" ]\n"), done.stderr

        return run

    def http(path: str, body: dict[str, Any]) -> Callable[[], tuple[int, str, str]]:
        def run() -> tuple[int, str, str]:
            r = alpha.api("POST", path, json=body)
            err = r.json().get("error") or {}
            return r.status_code, str(err.get("code")), str(err.get("message"))

        return run

    def questions() -> tuple[int, str, str]:
        r = alpha.api("GET", "/api/fleet/questions")
        errors = [e for e in r.json()["errors"] if e["hive"] == "forged"]
        return r.status_code, errors[0]["code"] if errors else "", str(errors)

    ways = {
        "hivectl pause": cli("pause", "bob@forged"),
        "hivectl status": cli("status", "bob@forged"),
        "hivectl answer": cli("answer", "7", "yes", "--hive", "forged"),
        "POST kick": http("/api/agents/bob@forged/kick", {}),
        "POST answer": http("/api/questions/7@forged/answer", {"answer": "yes"}),
        "GET questions": questions,
    }
    with ThreadPoolExecutor(len(ways)) as pool:
        running = {way: pool.submit(call) for way, call in ways.items()}
        return {way: future.result(REMOTE_TIMEOUT * 6) for way, future in running.items()}


def test_malformed_replies_are_that_hives_clear_error(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    make_dashboard: Callable[..., DashboardHive],
) -> None:
    alpha, beta, forged = _start(nats, make_hive, make_dashboard)
    try:
        # forged cannot take beta's operator requests to answer them in its place.
        heard = forged.attempt(lambda nc, js: nc.subscribe("hive.beta.ctl.*"))
        assert 'permissions violation for subscription to "hive.beta.ctl.*"' in heard
        before = _store_counts(alpha.hive)
        for case, answer, code, says in REPLIES:
            forged.answer = answer
            forged.requests.clear()
            got = _ask_every_way(alpha)
            assert got["hivectl pause"][0] == 1 and got["hivectl pause"][1] == code, (case, got)
            assert says in got["hivectl pause"][2] and "forged" in got["hivectl pause"][2], case
            for way in ("hivectl status", "hivectl answer"):
                assert got[way][:2] == (1, code), (case, way, got[way])
            for way in ("POST kick", "POST answer"):
                assert got[way][:2] == (STATUS[code], code), (case, way, got[way])
            # The panel bounds each hive at 5 s (its own timeout), below the verbs' 10 s;
            # it rebuilds each question row from the known keys (a stray NaN is not kept).
            panel = PANEL_CODE.get(case, code)
            assert got["GET questions"][:2] == (200, panel), (case, got["GET questions"])
            assert {op for _, op in forged.requests} == {
                "pause", "status", "answer", "kick", "questions"
            }, case  # fmt: skip
            _peers_fine(alpha)
        _question_rows_checked(alpha, forged)
        _its_requests_refused(forged)
        assert beta.status("bob")["paused"] is False
        assert _store_counts(alpha.hive) == before
    finally:
        forged.close()


def _its_requests_refused(forged: ForgedHive) -> None:
    """forged asks alpha and beta (neither lists it in operators) garbage and a pause:
    each is answered not_authorized."""
    for hive in ("alpha", "beta"):
        for data in (b"\xc1 garbage", packb({"op": "pause", "args": {"names": ["bob"]}})):
            reply = unpackb(forged.ask(f"hive.{hive}.ctl.forged", data))
            assert reply["error"]["code"] == "not_authorized", (hive, reply)


def _question(i: int, **more: Any) -> dict[str, Any]:
    return {"id": i, "agent": f"bob{i}", "question": f"q{i}?", "options": ["yes"],
            "ttl_remaining": 60.0, "status": "pending", **more}  # fmt: skip


MALFORMED_QUESTIONS = [
    _question(1, agent="bob@beta"),  # an agent of another hive
    _question(2, ttl_remaining="soon"),
    _question(3, options=[1, 2]),
    _question(4, id="x"),
    _question(5, expires_at=float("nan")),
]


def _question_rows_checked(alpha: DashboardHive, forged: ForgedHive) -> None:
    """A well-formed list with malformed rows and more rows than a hive sends: the panel
    shows the well-formed ones of the first 50, only the known keys, and counts the rest."""
    rows = MALFORMED_QUESTIONS + [_question(i, html="<b>x</b>") for i in range(6, 66)]
    forged.answer = _result({"questions": rows, "total": 70})
    r = alpha.api("GET", "/api/fleet/questions")
    assert r.status_code == 200, r.text
    listed = _strict_json(r.text)
    mine = [q for q in listed["questions"] if q["hive"] == "forged"]
    assert [q["id"] for q in mine] == list(range(6, 51)) and not listed["errors"], listed
    assert all(q["agent"] == f"bob{q['id']}@forged" and "html" not in q for q in mine)
    assert listed["left_off"] == {"forged": 20}


# --- rows in the fleet bucket -------------------------------------------------------------

ROWS: list[tuple[str, bytes, str, list[str]]] = [
    ("garbage bytes", b"\x00\xff\xc1 garbage", "not msgpack", []),
    ("not a map", packb("forged"), "not a map but str", []),
    ("wrong field types", _good_row(connected="yes"), "its field 'connected'", []),
    ("questions not a count", _good_row(questions="lots"), "its field 'questions'", []),
    ("outbox not counts", _good_row(outbox={"beta": "many"}), "its field 'outbox'", []),
    (
        "malformed agent rows",
        _good_row(agents=[{"name": "eve", "paused": "yes"}, {"name": 5}, "x", {"name": "ok"}]),
        "3 of its 4 agent rows malformed",
        ["ok"],
    ),
    (
        "a row claiming another hive's name and agents",
        _good_row(hive="beta", agents=[{"name": "bob@beta"}, {"name": "bob", "hive": "beta"}]),
        "1 of its 2 agent rows malformed",
        ["bob"],
    ),
    ("a round trip not a number", _good_row(rtt=float("nan")), "its field 'rtt'", []),
    ("a time at minus infinity", _good_row(ts=float("-inf")), "its field 'ts'", []),
    (
        "an agent's cost not a number",
        _good_row(agents=[{"name": "bob", "cost_today_usd": float("inf")}, {"name": "ok"}]),
        "1 of its 2 agent rows malformed",
        ["ok"],
    ),
    (
        "too many agents",
        _good_row(agents=[{"name": f"a{i}"} for i in range(MAX_ROW_AGENTS + 500)]),
        f"{MAX_ROW_AGENTS + 500} agent rows, over the limit of {MAX_ROW_AGENTS}",
        [f"a{i}" for i in range(MAX_ROW_AGENTS)],
    ),
    (
        "a huge row",
        _good_row(agents=[{"name": f"a{i}", "status_text": "x" * 1000} for i in range(1500)]),
        f"over the limit of {MAX_PEER_BYTES}",
        [],
    ),
]


def _shown(alpha: DashboardHive, says: str) -> dict[str, Any]:
    row: dict[str, Any] = wait_until(
        lambda: (f := _fleet(alpha).get("forged")) and says in str(f.get("error")) and f,
        what=f"forged's row with '{says}'",
    )
    return row


@pytest.mark.parametrize(("case", "data", "says", "agents"), ROWS, ids=[r[0] for r in ROWS])
def test_a_malformed_fleet_row_is_that_hives_error(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    make_dashboard: Callable[..., DashboardHive],
    case: str,
    data: bytes,
    says: str,
    agents: list[str],
) -> None:
    alpha, _beta, forged = _start(nats, make_hive, make_dashboard)
    try:
        before = _store_counts(alpha.hive)
        forged.put_row(data)
        row = _shown(alpha, says)
        assert row["error"]["code"] == "bad_row" and row["hive"] == "forged"
        assert [a["name"] for a in row["agents"]] == agents
        assert all(set(a) <= set(row["agents"][0]) for a in row["agents"])
        _peers_fine(alpha)
        listed = hivectl(alpha.hive, "list", json_out=False)
        assert listed.returncode == 0, listed.stderr
        [said] = [line for line in listed.stdout.splitlines() if line.startswith("forged: ")]
        assert "bob@beta" in listed.stdout and says in said and said.endswith("[bad_row]")
        assert "bob@beta@" not in listed.stdout
        assert alpha.api("GET", "/api/fleet/questions").status_code == 200
        assert _store_counts(alpha.hive) == before
    finally:
        forged.close()


def test_a_deleted_row_leaves_the_others(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    make_dashboard: Callable[..., DashboardHive],
) -> None:
    """A hive that deletes its key (it may: the key is its own) leaves the view, and every
    other hive's row is still read (a deleted key raised out of the whole round)."""
    alpha, _beta, forged = _start(nats, make_hive, make_dashboard)
    try:
        forged.delete_row()
        alpha.hive.wait_until(lambda: "forged" not in _fleet(alpha), what="forged gone")
        alpha.hive.wait_until(
            lambda: _fleet(alpha)["beta"]["age"] < 5, what="beta's row read after the delete"
        )
        _peers_fine(alpha)
    finally:
        forged.close()


def test_the_overview_shows_a_bad_row_beside_the_good_ones(
    nats: Callable[..., NatsServer],
    make_hive: Callable[..., RunningHive],
    make_dashboard: Callable[..., DashboardHive],
) -> None:
    """In Chromium: forged's link row says what is wrong with its row, its well-formed
    agent is listed, and beta's agent and link are shown as ever (the page keeps polling)."""
    alpha, _beta, forged = _start(nats, make_hive, make_dashboard)
    try:
        forged.put_row(_good_row(agents=[{"name": "ok"}, {"name": "eve", "paused": "yes"}]))
        with alpha.browser() as page:
            page.wait_for_selector(
                '#link-rows tr[data-hive="forged"] td.down:has-text("bad row: 1 of its 2")',
                timeout=30_000,
            )
            page.wait_for_selector('tr[data-agent="ok@forged"]')
            assert page.locator('tr[data-agent="eve@forged"]').count() == 0
            page.wait_for_selector('tr[data-agent="bob@beta"]')
            page.wait_for_selector('#link-rows tr[data-hive="beta"] td.connected:text-is("yes")')
            forged.put_row(b"\xc1 garbage")  # the next poll shows the new error
            page.wait_for_selector(
                '#link-rows tr[data-hive="forged"] td.down:text-is("bad row: not msgpack")',
                timeout=30_000,
            )
            page.wait_for_selector('tr[data-agent="ok@forged"]', state="detached")
            page.wait_for_selector('tr[data-agent="bob@beta"]')
    finally:
        forged.close()
