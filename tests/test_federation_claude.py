"""A real claude agent (the real claude CLI against the fake Anthropic API, through the
real hive-mcp) exchanges messages with an agent of another hive over a real nats-server:
its send tool takes ``bob@beta``, and bob's answer comes back into its next turn."""

from __future__ import annotations

from collections.abc import Callable

from tests.claude_hive import BOB_ANSWERS, ClaudeHive, claude_agent, hive_toml
from tests.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.federation_support import hive_config, nats, received
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture


def _federation(name: str, url: str) -> str:
    return f'\n[federation]\nname = "{name}"\nnats_url = "{url}"\nretry_seconds = 0.2\n' + (
        '[federation.accept]\n"*" = ["*@*"]\n'
    )


def test_a_claude_agent_talks_to_an_agent_of_another_hive(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive], api: FakeAnthropic
) -> None:
    url = nats().url
    api.script(ToolUse("mcp__hive__send", {"to": "bob@beta", "body": "ping from ann"}), Text("ok"))
    alpha = ClaudeHive(
        make_hive(hive_toml(claude_agent("ann")) + _federation("alpha", url), env=api.env(),
                  name="alpha"),
        api,
    )  # fmt: skip
    beta = make_hive(hive_config("beta", url, []) + BOB_ANSWERS, name="beta")
    sent = alpha.admin("send", to="ann", body="ask bob on beta how he is")

    first, second = alpha.wait_turns("ann", 2, timeout=90)
    assert [first["exit_class"], second["exit_class"]] == ["ok", "ok"], (first, second)
    assert first["message_ids"] == [sent["id"]]
    [ping] = received(beta, "alpha")
    assert ping[1:] == ("ann@alpha", "bob", "ping from ann")
    # The send tool's answer names the id alpha gave it; bob's reply woke ann again.
    [mine] = [m for m in alpha.messages("ann") if m["to"] == "bob@beta"]
    assert mine["id"] == ping[0]
    assert f"sent to bob@beta as message #{mine['id']}" in api_text(alpha, 1)
    [pong] = received(alpha, "beta")
    assert pong[1:] == ("bob@beta", "ann", "pong: ping from ann")
    second_prompt = api_text(alpha, 2)
    assert "from bob@beta]" in second_prompt and "pong: ping from ann" in second_prompt


def api_text(hive: ClaudeHive, index: int) -> str:
    return hive.requests_of("ann")[index].all_text()
