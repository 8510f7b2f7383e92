"""The fake Anthropic Messages API behaves like the real one where the claude CLI looks."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from tests.fake_anthropic import (
    FakeAnthropic,
    Hang,
    Text,
    ToolUse,
    overloaded,
    prompt_too_long,
    rate_limited,
    server_error,
    unauthorized,
)

BODY = {
    "model": "claude-test",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    "tools": [{"name": "mcp__hive__send", "input_schema": {"type": "object"}}],
}


def post(api: FakeAnthropic, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{api.url}/v1/messages?beta=true",
        json=body,
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        **kw,
    )


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_non_streaming_text_reply_and_recorded_request(api: FakeAnthropic) -> None:
    api.script(Text("hi!", input_tokens=7, output_tokens=3))
    reply = post(api, BODY)

    assert reply.status_code == 200
    message = reply.json()
    assert message["content"] == [{"type": "text", "text": "hi!"}]
    assert message["stop_reason"] == "end_turn"
    assert message["model"] == "claude-test"
    assert message["usage"]["input_tokens"] == 7 and message["usage"]["output_tokens"] == 3
    (req,) = api.requests
    assert (req.path, req.query, req.model) == ("/v1/messages", "beta=true", "claude-test")
    assert req.tool_names == ["mcp__hive__send"]
    assert req.headers["x-api-key"] == "k"
    assert req.last_user_text() == "hello there"


def test_streaming_tool_use_is_a_well_formed_event_stream(api: FakeAnthropic) -> None:
    api.script(ToolUse("mcp__hive__send", {"to": "bob", "body": "hi"}, text="sending"))
    reply = post(api, {**BODY, "stream": True})

    assert reply.headers["content-type"] == "text/event-stream"
    events = sse_events(reply.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[2][1]["delta"] == {"type": "text_delta", "text": "sending"}
    tool_start = events[4][1]["content_block"]
    assert (tool_start["type"], tool_start["name"], tool_start["input"]) == (
        "tool_use",
        "mcp__hive__send",
        {},
    )
    assert tool_start["id"].startswith("toolu_")
    delta = events[5][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert json.loads(delta["partial_json"]) == {"to": "bob", "body": "hi"}
    assert events[7][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (unauthorized(), 401, "authentication_error"),
        (rate_limited(), 429, "rate_limit_error"),
        (server_error(), 500, "api_error"),
        (overloaded(), 529, "overloaded_error"),
        (prompt_too_long(), 400, "invalid_request_error"),
    ],
)
def test_errors_carry_status_and_api_error_body(
    api: FakeAnthropic, error: Any, status: int, kind: str
) -> None:
    api.script(error)
    reply = post(api, {**BODY, "stream": True})
    assert reply.status_code == status
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == kind


def test_prompt_too_long_says_so(api: FakeAnthropic) -> None:
    api.script(prompt_too_long())
    assert "prompt is too long" in post(api, BODY).json()["error"]["message"]


def test_script_is_used_in_order_then_the_default_echoes(api: FakeAnthropic) -> None:
    api.script(Text("one"), lambda req: Text(f"model was {req.model}"))
    texts = [post(api, BODY).json()["content"][0]["text"] for _ in range(3)]
    assert texts == ["one", "model was claude-test", "(fake model) I got: hello there"]
    assert api.pending_replies == 0


def test_head_root_is_404_and_not_counted_as_a_message(api: FakeAnthropic) -> None:
    assert httpx.head(api.url + "/").status_code == 404
    assert httpx.post(api.url + "/v1/other", json={}).status_code == 404
    assert api.requests == []
    assert [(r.method, r.path) for r in api.other_requests] == [
        ("HEAD", "/"),
        ("POST", "/v1/other"),
    ]


def test_count_tokens(api: FakeAnthropic) -> None:
    reply = httpx.post(api.url + "/v1/messages/count_tokens", json=BODY)
    assert reply.status_code == 200 and reply.json()["input_tokens"] > 0


def test_hang_holds_the_request_until_released(api: FakeAnthropic) -> None:
    api.script(Hang(then=Text("finally")))
    replies: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: replies.append(post(api, BODY, timeout=30)))
    worker.start()
    api.wait_for_requests(1)
    assert replies == []  # recorded, not answered
    api.release()
    worker.join()
    assert replies[0].json()["content"][0]["text"] == "finally"


def test_env_points_the_cli_at_the_fake(api: FakeAnthropic) -> None:
    env = api.env(EXTRA="1")
    assert env["ANTHROPIC_BASE_URL"] == api.url and api.url.startswith("http://127.0.0.1:")
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0"
    assert env["EXTRA"] == "1"
