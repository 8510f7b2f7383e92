"""Operator questions: ask_operator is held until the operator answers, cancels, or its TTL
runs out; each question is resolved exactly once, survives a restart, and is never lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hive.client import HiveError
from tests.control_support import CONFIG, ask, inbox, pending, race, wait_pending
from tests.hive_harness import RunningHive, wait_until

MakeHive = Callable[..., RunningHive]


def test_the_agent_waits_for_the_answer_and_gets_it(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="Deploy to prod?", options=["yes", "no"], ttl_seconds=300)
    [row] = wait_pending(hive)
    assert row["kind"] == "question" and row["agent"] == "alice"
    assert row["question"] == "Deploy to prod?" and row["options"] == ["yes", "no"]
    assert 0 < row["ttl_remaining"] <= 300
    assert asked.thread.is_alive()  # held, not polled

    resolved = hive.admin("answer", id=row["id"], answer="yes, after 18:00")
    assert resolved["status"] == "answered"
    result = asked.result()
    # The reply carries the id of the answer's inbox copy, which the client acknowledged.
    [notice] = result.pop("ack_ids")
    assert result == {"id": row["id"], "status": "answered", "answer": "yes, after 18:00"}
    [copy] = [m for m in hive.messages("alice") if m["id"] == notice]
    assert copy["state"] == "delivered" and copy["delivered_by"] == "recv"
    assert pending(hive) == []
    with pytest.raises(HiveError) as info:
        hive.admin("answer", id=row["id"], answer="no")
    assert info.value.code == "already_resolved"
    assert "already resolved as answered" in info.value.message


def test_an_expired_question_says_expired_never_denied(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    started = time.monotonic()
    asked = ask(hive, "alice", question="Still there?", ttl_seconds=1.5)
    result = asked.result()
    assert result["status"] == "expired"
    assert time.monotonic() - started >= 1.4
    [row] = hive.admin("approvals", status="expired")["approvals"]
    assert row["id"] == result["id"] and row["resolution"]["by"] == "system"
    assert hive.admin("approvals", status="denied")["approvals"] == []


def test_the_ttl_countdown_shrinks(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    ask(hive, "alice", question="Which branch?", ttl_seconds=600)
    [first] = wait_pending(hive)
    later = hive.wait_until(
        lambda: (rows := pending(hive)) and rows[0]["ttl_remaining"] < first["ttl_remaining"] - 0.2
        and rows[0],
        what="the TTL to count down",
    )  # fmt: skip
    assert later["expires_at"] == first["expires_at"]


def test_a_question_without_ttl_waits_until_answered(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="No hurry?")
    [row] = wait_pending(hive)
    assert row["expires_at"] is None and "ttl_remaining" not in row
    hive.admin("answer", id=row["id"], answer="none")
    assert asked.result()["answer"] == "none"


def test_the_operator_can_cancel_a_question(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="Shall I?", ttl_seconds=300)
    [row] = wait_pending(hive)
    hive.admin("cancel", id=row["id"], reason="not relevant any more")
    result = asked.result()
    assert result["status"] == "cancelled" and result["reason"] == "not relevant any more"


def test_an_agent_withdraws_its_own_question_but_not_anothers(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="Mine", ttl_seconds=300)
    [row] = wait_pending(hive)
    with hive.agent("worker") as worker, pytest.raises(HiveError) as info:
        worker.call("cancel_question", id=row["id"])
    assert (
        info.value.code == "bad_request" and "not a question 'worker' asked" in info.value.message
    )
    with hive.agent("alice") as alice:
        assert alice.call("cancel_question", id=row["id"]) == {
            "id": row["id"],
            "status": "cancelled",
        }
    assert asked.result()["status"] == "cancelled"
    # Withdrawn by the asker itself: nothing lands in its inbox about it.
    assert not [m for m in inbox(hive, "alice") if m["meta"].get("question") == row["id"]]


def test_bad_questions_are_refused_with_the_reason(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    with hive.agent("alice") as alice:
        for args, words in (
            ({"question": ""}, "1 to 8000 characters"),
            ({"question": "q", "ttl_seconds": 0}, "ttl_seconds must be above 0"),
            ({"question": "q", "options": "yes"}, "options must be a list"),
            ({"question": "q", "options": [""]}, "non-empty strings"),
        ):
            with pytest.raises(HiveError) as info:
                alice.call("ask_operator", **args)
            assert info.value.code == "bad_request" and words in info.value.message
    assert pending(hive) == []


@pytest.mark.parametrize("round_", range(3))
def test_many_concurrent_resolvers_exactly_one_wins(make_hive: MakeHive, round_: int) -> None:
    hive = make_hive(CONFIG)
    # The TTL runs out while the resolvers race, so expiry takes part too.
    asked = ask(hive, "alice", question=f"race {round_}", ttl_seconds=1.0)
    [row] = wait_pending(hive)
    qid = row["id"]
    wait = max(0.0, row["expires_at"] - time.time() - 0.02)
    time.sleep(wait)  # aim the burst at the expiry instant (not a synchronisation)

    def answer(i: int) -> Callable[[], object]:
        return lambda: hive.admin("answer", id=qid, answer=f"answer {i}")

    def cancel() -> object:
        return hive.admin("cancel", id=qid)

    calls = [answer(i) for i in range(12)] + [cancel for _ in range(12)]
    results = race(calls)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, HiveError)]
    final = asked.result()
    assert len(winners) <= 1
    assert len(winners) + len(losers) == len(calls)
    for loser in losers:
        assert loser.code == "already_resolved", loser.message
        assert f"already resolved as {final['status']}" in loser.message
    if winners:
        assert winners[0]["status"] == final["status"] != "expired"
    else:
        assert final["status"] == "expired"  # the timer won
    db_rows = hive.admin("approvals")["approvals"]
    assert [(r["id"], r["status"]) for r in db_rows] == [(qid, final["status"])]


def test_a_pending_question_survives_a_crash_and_a_re_ask_waits_on_it(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(CONFIG)
    asked = ask(hive, "alice", question="Merge it?", options=["yes", "no"], ttl_seconds=600)
    [row] = wait_pending(hive)
    hive.kill()
    with pytest.raises((HiveError, OSError)):
        asked.result()  # the held reply dies with the daemon's socket
    hive = hive.restart()
    [after] = pending(hive)
    assert after["id"] == row["id"] and after["expires_at"] == row["expires_at"]
    # The agent's turn runs again and asks the same thing: same question, not a second one.
    again = ask(hive, "alice", question="Merge it?", options=["yes", "no"], ttl_seconds=600)
    hive.wait_until(lambda: pending(hive)[0]["waiting"] == 1, what="the re-ask to wait")
    assert [r["id"] for r in pending(hive)] == [row["id"]]
    hive.admin("answer", id=row["id"], answer="yes")
    result = again.result()
    result.pop("ack_ids")
    assert result == {"id": row["id"], "status": "answered", "answer": "yes"}


def test_a_ttl_that_ran_out_during_downtime_expires_at_start(make_hive: MakeHive) -> None:
    hive = make_hive(CONFIG)
    ask(hive, "alice", question="Quick?", ttl_seconds=1.0)
    [row] = wait_pending(hive)
    hive.kill()
    wait_until(lambda: time.time() > row["expires_at"], what="the TTL to run out")
    hive = hive.restart()
    hive.wait_until(
        lambda: hive.admin("approvals", status="expired")["approvals"], what="expiry after start"
    )
    assert pending(hive) == []


def test_an_answer_nobody_waits_for_goes_to_the_askers_inbox(make_hive: MakeHive) -> None:
    from hive.client import SyncClient
    from hive.wire import encode_frame, request

    hive = make_hive(CONFIG)
    hive.admin("pause", names=["alice"])  # keep her turn loop off her inbox
    with SyncClient(hive.agent_socket("alice")) as alice:
        alice.send_raw(encode_frame(request(1, "ask_operator", question="Which port?")))
        [row] = hive.wait_until(
            lambda: (rows := pending(hive)) and rows[0]["waiting"] == 1 and rows,
            what="the question to be held",
        )
    # The asker hung up (its turn ended): nobody holds the reply any more.
    hive.wait_until(lambda: pending(hive)[0]["waiting"] == 0, what="the waiter to go")
    assert hive.admin("answer", id=row["id"], answer="8080")["status"] == "answered"
    [note] = hive.wait_until(
        lambda: [m for m in inbox(hive, "alice") if m["meta"].get("question") == row["id"]],
        what="the answer in alice's inbox",
    )
    assert note["from"] == "system" and "answered your question" in note["body"]
    assert "8080" in note["body"]
    hive.wait_until(lambda: hive.status("alice")["inbox_depth"] == 1, what="alice's inbox")


def test_subscribers_see_a_question_arrive_and_leave(make_hive: MakeHive) -> None:
    from hive.client import SyncClient

    hive = make_hive(CONFIG)
    with SyncClient(hive.admin_path, timeout=30) as sub:
        frames = sub.stream("subscribe", kinds=["question"])
        snapshot = next(frames)
        assert snapshot["push"] == "snapshot" and snapshot["data"]["items"]["question"] == []
        asked = ask(hive, "alice", question="Seen?", ttl_seconds=60)
        arrived = next(frames)["data"]
        assert arrived["kind"] == "question" and arrived["data"]["status"] == "pending"
        hive.admin("answer", id=arrived["data"]["id"], answer="yes")
        resolved = next(frames)["data"]
        gone = next(frames)["data"]
        assert resolved["data"]["status"] == "answered"
        assert gone["key"] == arrived["key"] and gone["data"] is None
    asked.result()


def test_an_agent_cannot_bury_the_operator_in_questions(make_hive: MakeHive) -> None:
    from hive.actors.approvals import MAX_OPEN_QUESTIONS
    from hive.client import SyncClient
    from hive.wire import encode_frame, request

    hive = make_hive(CONFIG)
    with SyncClient(hive.agent_socket("alice"), timeout=60) as alice:
        frames = [
            encode_frame(request(i + 1, "ask_operator", question=f"question {i}"))
            for i in range(MAX_OPEN_QUESTIONS + 1)
        ]
        alice.send_raw(b"".join(frames))
        refused = alice.read_frame()  # the only reply that is not held
    assert refused["id"] == MAX_OPEN_QUESTIONS + 1 and refused["ok"] is False
    assert refused["error"]["code"] == "too_many_questions"
    # The refusal can overtake the commits of the accepted ones: wait for those.
    rows = wait_pending(hive, MAX_OPEN_QUESTIONS, what="the accepted questions")
    assert len(rows) == MAX_OPEN_QUESTIONS
