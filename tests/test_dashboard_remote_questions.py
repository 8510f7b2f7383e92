"""The questions of another hive's agents on the dashboard (issue 13, item 4): two real
hives on a real nats-server; beta's agent asks the operator, alpha's overview shows the
question with its hive, the operator answers it there, and beta's held ask returns with
the answer (beta ran the answer verb). The errors: a double answer (from alpha twice, or
after beta's own operator answered), a hive that does not exist, a hive that went away,
a hive whose policy refuses alpha, a malformed reference, a hive without federation; in
Chromium, a failed answer keeps the typed text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.control_support import Asked, ask
from tests.federation_support import alpha_and_beta, nats
from tests.nats_harness import NatsServer
from tests.test_a11y import (
    DESKTOP,
    PHONE,
    axe_script,
    logged_in,
    no_sideways_scroll,
    serious_violations,
)
from tests.ui_harness import DashboardHive, make_dashboard, screenshot, wait_until

__all__ = ["make_dashboard", "nats"]

Make = Callable[..., DashboardHive]


def _asks(dash: DashboardHive, agent: str, question: str) -> tuple[Asked, int]:
    """``agent`` asks the operator (held in a thread); the question's id on its hive."""
    asked = ask(dash.hive, agent, question=question, options=["yes", "no"], ttl_seconds=600)
    rows = dash.hive.wait_until(
        lambda: [r for r in dash.hive.admin("pending")["pending"] if r["question"] == question],
        what=f"{agent}'s question pending",
    )
    return asked, int(rows[0]["id"])


def _listed(dash: DashboardHive, key: str) -> dict[str, Any]:
    """The remote question ``key`` as ``dash`` lists it (waits for the fleet row's count)."""
    found: dict[str, Any] = wait_until(
        lambda: next(
            (q for q in dash.ok("GET", "/api/fleet/questions")["questions"] if q["key"] == key),
            None,
        ),
        what=f"question {key} listed",
    )
    return found


def _error(dash: DashboardHive, path: str, body: dict[str, Any]) -> tuple[int, str, str]:
    r = dash.api("POST", path, json=body)
    err = r.json()["error"]
    return r.status_code, err["code"], err["message"]


def test_a_remote_question_is_listed_answered_and_errors_are_clear(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    asked, qid = _asks(beta, "bob", "Deploy beta?")
    row = _listed(alpha, f"{qid}@beta")
    assert (row["hive"], row["agent"], row["question"]) == ("beta", "bob@beta", "Deploy beta?")
    assert row["options"] == ["yes", "no"] and 0 < row["ttl_remaining"] <= 600
    fleet = {h["hive"]: h for h in alpha.ok("GET", "/api/fleet")["hives"]}
    assert fleet["beta"]["questions"] == 1 and fleet["alpha"]["questions"] == 0

    # Answered from alpha: beta runs it, and bob's held ask returns with the answer.
    done = alpha.ok("POST", f"/api/questions/{qid}@beta/answer", json={"answer": "yes, beta"})
    assert done["status"] == "answered"
    assert asked.result()["answer"] == "yes, beta"
    [stored] = beta.hive.admin("approvals", status="answered")["approvals"]
    assert stored["resolution"]["answer"] == "yes, beta"

    # A double answer from alpha: beta says it is already answered, and keeps the first.
    status, code, message = _error(alpha, f"/api/questions/{qid}@beta/answer", {"answer": "no"})
    assert (status, code) == (409, "already_resolved")
    assert message.startswith("hive 'beta': ") and "already resolved as answered" in message

    # Answered by beta's own operator first, then from alpha: the same clear error.
    second, qid2 = _asks(beta, "bob", "Restart the cache?")
    _listed(alpha, f"{qid2}@beta")
    beta.ok("POST", f"/api/questions/{qid2}/answer", json={"answer": "beta's own"})
    assert second.result()["answer"] == "beta's own"
    status, code, _ = _error(alpha, f"/api/questions/{qid2}@beta/answer", {"answer": "late"})
    assert (status, code) == (409, "already_resolved")
    wait_until(
        lambda: alpha.ok("GET", "/api/fleet/questions")["questions"] == [],
        what="the answered questions gone from alpha's list",
    )

    # Malformed references and a hive that does not exist.
    cases = [
        ("/api/questions/1@delta/answer", 404, "unknown_hive"),
        ("/api/questions/1@Beta/answer", 400, "invalid_name"),
        ("/api/questions/x@beta/answer", 400, "bad_request"),
    ]
    for path, want_status, want_code in cases:
        assert _error(alpha, path, {"answer": "hi"})[:2] == (want_status, want_code), path


def test_a_hive_that_refuses_or_went_away_is_a_clear_error(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    # alpha lists no operators: beta may neither read nor answer alice's question.
    _asked, qid = _asks(alpha, "alice", "Scale alpha?")
    errors = wait_until(
        lambda: beta.ok("GET", "/api/fleet/questions")["errors"], what="alpha's refusal"
    )
    assert [(e["hive"], e["code"]) for e in errors] == [("alpha", "not_authorized")]
    assert "does not take operator requests from hive 'beta'" in errors[0]["message"]
    status, code, message = _error(beta, f"/api/questions/{qid}@alpha/answer", {"answer": "y"})
    assert (status, code) == (403, "not_authorized")
    [still] = alpha.hive.admin("pending")["pending"]
    assert (still["id"], still["status"]) == (qid, "pending")

    # beta goes away with bob's question pending: listing and answering say so; the
    # question is still pending in beta's store when it comes back.
    _bob, bid = _asks(beta, "bob", "Still there?")
    _listed(alpha, f"{bid}@beta")
    beta.hive.terminate()
    status, code, message = _error(alpha, f"/api/questions/{bid}@beta/answer", {"answer": "y"})
    assert (status, code) == (503, "hive_unreachable") and "does not answer" in message
    errors = alpha.ok("GET", "/api/fleet/questions")["errors"]
    assert [(e["hive"], e["code"]) for e in errors] == [("beta", "hive_unreachable")]


def test_without_federation_a_remote_question_is_refused(make_dashboard: Make) -> None:
    dash = make_dashboard('[[agent]]\nname = "bob"\n')
    assert dash.ok("GET", "/api/fleet/questions") == {"questions": [], "left_off": {},
                                                      "errors": []}  # fmt: skip
    r = dash.api("POST", "/api/questions/1@beta/answer", json={"answer": "hi"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "not_federated")


def test_the_operator_answers_a_remote_question_on_the_overview(
    nats: Callable[..., NatsServer], make_dashboard: Make
) -> None:
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    with alpha.browser() as page:
        page.wait_for_selector('tr[data-agent="bob@beta"]', timeout=30_000)
        asked, qid = _asks(beta, "bob", "Deploy beta?")
        card = page.locator(f'#questions article[data-key="{qid}@beta"]')
        card.wait_for(timeout=30_000)
        assert card.locator(".agent").inner_text() == "bob@beta"
        assert card.locator(".chip.hive").inner_text() == "beta"
        assert "Deploy beta?" in card.inner_text()
        assert page.locator("#questions-count").inner_text() == "1"
        assert "1 question" in page.inner_text("#pending-summary")
        assert not card.locator("button", has_text="cancel").is_visible()  # not remote
        card.locator("input.answer").fill("yes, from alpha")
        screenshot(page, "question-remote")
        card.locator("button", has_text="answer").click()
        card.locator('[role=status]:text-is("answered")').wait_for()
        result = asked.result()
        assert (result["status"], result["answer"]) == ("answered", "yes, from alpha")
        page.wait_for_function("() => !document.querySelector('#questions article')",
                               timeout=30_000)  # fmt: skip

        # beta goes away with a question pending: the answer fails clearly, the text stays.
        _asked, qid2 = _asks(beta, "bob", "Still there?")
        card = page.locator(f'#questions article[data-key="{qid2}@beta"]')
        card.wait_for(timeout=30_000)
        beta.hive.terminate()
        card.locator("input.answer").fill("typed before beta went")
        card.locator("button", has_text="answer").click()
        outcome = card.locator(".outcome.error")
        outcome.wait_for()
        assert "does not answer" in outcome.inner_text()
        assert "hive_unreachable" in outcome.inner_text()
        assert card.locator("input.answer").input_value() == "typed before beta went"
        assert card.locator("button", has_text="answer").is_enabled()
        page.wait_for_selector('#questions-remote:has-text("hive_unreachable")', timeout=30_000)
        assert card.is_visible()  # an unreachable hive's cards stay: their fate is unknown


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_remote_question_card_is_axe_clean_and_fits(
    nats: Callable[..., NatsServer], make_dashboard: Make, viewport: dict[str, int]
) -> None:
    source = axe_script()
    alpha, beta = alpha_and_beta(nats, make_dashboard)
    _asked, qid = _asks(beta, "bob", "Deploy beta?")
    with logged_in(alpha, viewport) as page:
        page.goto(alpha.url)
        page.wait_for_selector(f'#questions article[data-key="{qid}@beta"]', timeout=30_000)
        no_sideways_scroll(page, viewport["width"])
        found = serious_violations(page, source)
        screenshot(page, f"a11y-question-remote-{viewport['width']}")
    assert not found, json.dumps(found, indent=1)
