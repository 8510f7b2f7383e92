"""The MCP pool: agents that declare the same extra MCP server share one process, run by the
supervisor and reached through the relay on each agent's own socket. Real supervisor, real
relay, a real stdio MCP server (tests/echo_mcp_server.py, which logs its pid on start); the
last tests run real claude agents against the fake API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from hive.client import HiveError, SyncClient
from hive.config import AgentConfig, ConfigError, HiveConfig, McpServerConfig
from hive.policy import mcp_pooled
from hive.process import AgentPaths
from hive.runtimes.base import TurnInput
from hive.runtimes.claude import ClaudeRuntime
from tests.claude_hive import ClaudeHive, claude_agent, hive_toml, mcp_server
from tests.fake_anthropic import FakeAnthropic, RecordedRequest, Reply, Text, ToolUse
from tests.hive_harness import RunningHive, wait_until
from tests.mcp_lines import RelayClient, text_of

MakeHive = Callable[..., RunningHive]
ECHO = Path(__file__).with_name("echo_mcp_server.py")


def echo_block(pid_file: Path, **fields: object) -> str:
    env = {"ECHO_PID_FILE": str(pid_file)}
    return mcp_server("tools", sys.executable, [str(ECHO)], ["echo"], env=env, **fields)


def scripted(name: str, pid_file: Path, **fields: object) -> str:
    return f'[[agent]]\nname = "{name}"\n' + echo_block(pid_file, **fields)


def starts(pid_file: Path) -> list[int]:
    """The pids of every echo server started so far."""
    return [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def gone(pid: int) -> bool:
    return not alive(pid)


def paused_hive(make_hive: MakeHive, config: str) -> RunningHive:
    hive = make_hive(config)
    hive.admin("pause", names=[a for a in ("alice", "bob") if f'"{a}"' in config])
    return hive


def test_two_agents_share_one_process_and_each_gets_its_own_answers(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    hive = paused_hive(make_hive, scripted("alice", pids) + scripted("bob", pids))
    with (
        RelayClient(hive.agent_socket("alice"), server="tools") as alice,
        RelayClient(hive.agent_socket("bob"), server="tools") as bob,
    ):
        assert alice.initialize()["result"]["serverInfo"]["name"] == "echo"
        assert bob.initialize()["result"]["serverInfo"]["name"] == "echo"
        # Both clients use the same JSON-RPC ids, in flight at once: the pool tells them apart.
        for client, who in ((alice, "alice"), (bob, "bob")):
            client.write({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": who}}})  # fmt: skip
        assert text_of(bob.read()["result"]) == "bob"
        assert text_of(alice.read()["result"]) == "alice"
        tools = {t["name"] for t in alice.request("tools/list")["result"]["tools"]}
        assert tools == {"echo", "exit_now"}
    [pid] = starts(pids)  # one process served both agents
    assert alive(pid)  # and stays for the next turns (mcp_pool_idle_seconds)


def test_a_crashing_pooled_server_errors_clearly_and_is_started_again(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    hive = paused_hive(make_hive, scripted("alice", pids))
    with RelayClient(hive.agent_socket("alice"), server="tools") as mcp:
        mcp.initialize()
        assert text_of(mcp.call_tool("echo", {"text": "one"})) == "one"
        crash = mcp.request("tools/call", {"name": "exit_now", "arguments": {"code": 3}})
        message = crash["error"]["message"]
        assert "shared MCP server 'tools' exited (code 3)" in message, crash
        assert "started again on the next call" in message
        assert text_of(mcp.call_tool("echo", {"text": "two"})) == "two"  # a new process
    first, second = starts(pids)
    assert not alive(first) and alive(second)


def test_bad_lines_to_a_pooled_server_get_errors_and_the_session_goes_on(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    hive = paused_hive(make_hive, scripted("alice", tmp_path / "pids"))
    with RelayClient(hive.agent_socket("alice"), server="tools") as mcp:
        mcp.initialize()
        mcp.write(b"not json at all\n")
        assert mcp.read()["error"]["code"] == -32700
        mcp.write({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": [1, 2]})
        bad = mcp.read()
        assert bad["id"] == 9 and bad["error"]["code"] == -32600
        assert text_of(mcp.call_tool("echo", {"text": "still here"})) == "still here"


def test_an_idle_pooled_server_is_stopped_and_started_again_when_needed(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    hive = paused_hive(make_hive, "[hive]\nmcp_pool_idle_seconds = 0.5\n" + scripted("alice", pids))
    for text in ("one", "two"):
        with RelayClient(hive.agent_socket("alice"), server="tools") as mcp:
            mcp.initialize()
            assert text_of(mcp.call_tool("echo", {"text": text})) == text
        last = starts(pids)[-1]
        wait_until(partial(gone, last), what="the idle server to be stopped")
    assert len(starts(pids)) == 2


def test_a_pooled_server_that_cannot_start_is_a_clear_error(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-server"
    config = '[[agent]]\nname = "alice"\n' + mcp_server("tools", str(missing), [], ["echo"])
    hive = paused_hive(make_hive, config)
    with RelayClient(hive.agent_socket("alice"), server="tools") as mcp:
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}}
        answer = mcp.request("initialize", params)
        assert "could not start" in answer["error"]["message"] and str(missing) in str(answer)
        again = mcp.request("tools/list")  # the relay lives on; each try says why
        assert "could not start" in again["error"]["message"]


def test_opt_out_and_undeclared_servers_are_refused_by_the_pool(
    make_hive: MakeHive, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    hive = paused_hive(make_hive, scripted("alice", pids, shared=False) + scripted("bob", pids))
    with SyncClient(hive.agent_socket("alice"), timeout=30) as c, pytest.raises(HiveError) as no:
        c.request("mcp", server="tools")
    assert no.value.code == "not_shared" and "shared = false" in no.value.message
    with SyncClient(hive.agent_socket("bob"), timeout=30) as c, pytest.raises(HiveError) as no:
        c.request("mcp", server="other")  # bob may attach only to what he declared
    assert no.value.code == "unknown_server"
    assert starts(pids) == []


def test_only_agents_without_a_sandbox_share(tmp_path: Path) -> None:
    server = McpServerConfig(name="tools", command="echo-mcp")
    plain = AgentConfig(name="alice", mcp_servers=(server,))
    boxed = AgentConfig(name="bob", sandbox="bwrap", mcp_servers=(server,))
    opted_out = server.model_copy(update={"shared": False})
    assert mcp_pooled(plain, server)
    assert not mcp_pooled(boxed, server) and not mcp_pooled(plain, opted_out)

    def config_of(agent: AgentConfig) -> dict[str, dict[str, object]]:
        paths = AgentPaths.for_agent(agent.name, tmp_path, tmp_path / "run")
        turn = TurnInput(HiveConfig(), agent, paths, 1, "m", ())
        servers: dict[str, dict[str, object]] = ClaudeRuntime().mcp_config(turn)["mcpServers"]
        return servers

    pooled = config_of(plain)["tools"]
    assert pooled["env"] == {"HIVE_SOCKET": str(tmp_path / "run/agents/alice.sock"),
                             "HIVE_MCP_SERVER": "tools"}  # fmt: skip
    assert str(pooled["args"]).endswith("mcp_relay.py']")
    assert config_of(boxed)["tools"]["command"] == "echo-mcp"  # started in its own sandbox


# --- real claude agents ---------------------------------------------------------------------


def use_echo(req: RecordedRequest) -> Reply:
    """Each agent calls the echo tool once, then ends its turn."""
    if req.tool_results():
        return Text("echoed")
    me = "alice" if "You are 'alice'" in req.system_text else "bob"
    return ToolUse("mcp__tools__echo", {"text": f"echo for {me}"})


@pytest.mark.parametrize("shared", [True, False])
def test_two_claude_agents_with_the_same_server(
    make_hive: MakeHive, api: FakeAnthropic, tmp_path: Path, shared: bool
) -> None:
    pids = tmp_path / "pids"
    # Per-turn claude processes: an opted-out server is claude's own and ends with its turn.
    agents = [
        claude_agent(n, persistent=False) + echo_block(pids, shared=shared)
        for n in ("alice", "bob")
    ]
    api.script(*[use_echo] * 4)
    hive = ClaudeHive(make_hive(hive_toml(*agents), env=api.env()), api)
    for name in ("alice", "bob"):
        hive.admin("send", to=name, body="use the echo tool")
    for name in ("alice", "bob"):
        [turn] = hive.wait_turns(name, 1)
        assert turn["exit_class"] == "ok", turn
        [init] = hive.of(turn["id"], "init")
        assert {"name": "tools", "status": "connected"} in init["mcp_servers"]
        [result] = hive.of(turn["id"], "tool_result")
        assert result == {**result, "is_error": False, "content": f"echo for {name}"}
    # Pooled: one process for both agents, still running for their next turns. Opted out:
    # each claude started its own.
    assert len(starts(pids)) == (1 if shared else 2)
    if shared:
        [pid] = starts(pids)
        assert alive(pid)
    else:
        wait_until(lambda: not any(alive(p) for p in starts(pids)), what="per-turn servers")


def test_shared_must_be_a_boolean() -> None:
    server = {"name": "tools", "command": "x", "shared": "yes"}
    with pytest.raises(ConfigError, match=r"mcp_servers\[0\]\.shared"):
        AgentConfig.from_dict({"name": "bob", "mcp_servers": [server]})
