"""The hive's MCP tools through the real relay over stdio (the mcp SDK's Client starts it),
served on a real agent socket (tests/agent_socket_stub.py runs the hive's MCP session)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, TextContent

from tests.agent_socket_stub import AgentSocketStub

AGENT_TOOLS = {"send", "recv", "ask_operator", "cancel_question", "set_status"}
MANAGER_TOOLS = {
    "request_spawn",
    "request_spawn_draft",
    "request_spawn_commit",
    "request_apply_commit",
    "kick_agent",
    "schedule_prompt",
}


RELAY = [sys.executable, "-I", "-S", str(Path(__file__).parents[1] / "hive" / "mcp_relay.py")]


def hive_mcp(socket: Path) -> StdioServerParameters:
    return StdioServerParameters(command=RELAY[0], args=RELAY[1:], env={"HIVE_SOCKET": str(socket)})


@asynccontextmanager
async def connected(
    tmp_path: Path, manager: bool = False, name: str = "alice"
) -> AsyncIterator[tuple[Client, AgentSocketStub]]:
    stub = AgentSocketStub(tmp_path / "agent.sock", name=name, manager=manager)
    async with trio.open_nursery() as nursery:
        await nursery.start(stub.serve)
        async with Client(hive_mcp(stub.path), read_timeout_seconds=60) as client:
            yield client, stub
        nursery.cancel_scope.cancel()


def text(result: CallToolResult) -> str:
    (block,) = result.content
    assert isinstance(block, TextContent)
    return block.text


async def test_an_agent_gets_the_agent_tools_with_descriptions(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == AGENT_TOOLS
        assert all(len(t.description or "") > 40 for t in tools.values())
        wait = tools["recv"].input_schema["properties"]["wait_seconds"]
        assert (wait["minimum"], wait["maximum"]) == (0, 180)
        assert "You are an agent in a hive" in (client.instructions or "")
        assert "You are the manager" not in (client.instructions or "")
    assert stub.calls[0] == ("mcp", {})


async def test_the_manager_also_gets_the_manager_tools(tmp_path: Path) -> None:
    async with connected(tmp_path, manager=True, name="manager") as (client, stub):
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == AGENT_TOOLS | MANAGER_TOOLS

        spawn = await client.call_tool("request_spawn", {"name": "carol", "model": "m1"})
        assert not spawn.is_error and "waiting for the operator's approval" in text(spawn)
        await client.call_tool("request_spawn_draft", {"name": "dave"})
        await client.call_tool("request_spawn_commit", {"name": "dave", "ref": "abc123"})
        await client.call_tool("request_apply_commit", {"agent": "carol", "ref": "def456"})
        kick = await client.call_tool("kick_agent", {"name": "carol"})
        assert text(kick) == "kicked 'carol'"
        await client.call_tool(
            "schedule_prompt", {"agent": "carol", "at": "2026-12-01T09:00:00Z", "text": "go"}
        )
    # Forwarded as given; optional arguments left out are not sent at all.
    assert stub.calls[1:] == [
        ("request_spawn", {"name": "carol", "model": "m1"}),
        ("request_spawn_draft", {"name": "dave"}),
        ("request_spawn_commit", {"name": "dave", "ref": "abc123"}),
        ("request_apply_commit", {"agent": "carol", "ref": "def456"}),
        ("kick_agent", {"name": "carol"}),
        ("schedule_prompt", {"agent": "carol", "at": "2026-12-01T09:00:00Z", "text": "go"}),
    ]


async def test_manager_tools_are_not_there_for_an_agent(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        result = await client.call_tool("kick_agent", {"name": "bob"})
        assert result.is_error
    assert [op for op, _ in stub.calls] == ["mcp"]


async def test_send_forwards_and_a_refusal_is_a_tool_error_with_the_reason(
    tmp_path: Path,
) -> None:
    async with connected(tmp_path) as (client, stub):
        sent = await client.call_tool("send", {"to": "bob", "body": "hello"})
        assert not sent.is_error and text(sent) == "sent to bob as message #100"
        assert stub.sent == [{"id": 100, "to": "bob", "body": "hello"}]

        stub.refuse["eve"] = "agent 'alice' may not send to 'eve': not in allowed_recipients"
        refused = await client.call_tool("send", {"to": "eve", "body": "psst"})
        assert refused.is_error
        assert "may not send to 'eve': not in allowed_recipients [not_allowed]" in text(refused)


async def test_recv_waits_for_a_message(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        empty = await client.call_tool("recv", {})
        assert text(empty) == "no new messages (waited 0 s)"

        results: list[CallToolResult] = []

        async def receive() -> None:
            results.append(await client.call_tool("recv", {"wait_seconds": 60}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await stub.recv_waiting.wait()
            stub.deliver("bob", "the build is green")
        assert text(results[0]).endswith("from bob]\n> the build is green")
        assert ("recv", {"wait_seconds": 60}) in stub.calls


async def test_recv_refuses_waits_over_180_seconds_before_asking_the_hive(
    tmp_path: Path,
) -> None:
    async with connected(tmp_path) as (client, stub):
        result = await client.call_tool("recv", {"wait_seconds": 181})
        assert result.is_error and "less than or equal to 180" in text(result)
    assert [op for op, _ in stub.calls] == ["mcp"]


async def test_ask_operator_answered(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        results: list[CallToolResult] = []

        async def ask() -> None:
            results.append(
                await client.call_tool(
                    "ask_operator", {"question": "Deploy now?", "options": ["yes", "no"]}
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await stub.question_asked.wait()
            (question,) = stub.questions.values()
            assert (question.question, question.options) == ("Deploy now?", ["yes", "no"])
            stub.answer(question.id, "yes")
        assert text(results[0]) == f"the operator answered question #{question.id}: yes"


async def test_ask_operator_cancelled_by_cancel_question(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        results: list[CallToolResult] = []

        async def ask() -> None:
            results.append(await client.call_tool("ask_operator", {"question": "Which db?"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await stub.question_asked.wait()
            (qid,) = stub.questions
            cancelled = await client.call_tool("cancel_question", {"id": qid})
            assert text(cancelled) == f"question #{qid} cancelled"
        assert "cancelled question" in text(results[0])


async def test_ask_operator_expiry_is_not_a_refusal(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, _stub):
        result = await client.call_tool("ask_operator", {"question": "Ok?", "ttl_seconds": 1})
        assert "expired after 1 s" in text(result) and "not a refusal" in text(result)


async def test_set_status(tmp_path: Path) -> None:
    async with connected(tmp_path) as (client, stub):
        result = await client.call_tool("set_status", {"text": "reviewing PR 12"})
        assert text(result) == "status set"
    assert stub.status_text == "reviewing PR 12"


async def test_lost_supervisor_is_a_tool_error_not_a_dead_server(tmp_path: Path) -> None:
    stub = AgentSocketStub(tmp_path / "agent.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(stub.serve)
        async with Client(hive_mcp(stub.path), read_timeout_seconds=60) as client:
            await client.call_tool("set_status", {"text": "up"})
            await stub.stop()  # the supervisor goes away: its sockets close
            result = await client.call_tool("send", {"to": "bob", "body": "hi"})
            assert result.is_error and "lost the connection to the hive supervisor" in text(result)
            # Still serving: the next call fails the same way instead of hanging.
            again = await client.call_tool("set_status", {"text": "still here"})
            assert again.is_error
        nursery.cancel_scope.cancel()
    assert ("send", {"to": "bob", "body": "hi"}) not in stub.calls


async def test_without_hive_socket_it_exits_with_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HIVE_SOCKET"}
    proc = await trio.run_process(
        RELAY,
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=b"",
    )
    assert proc.returncode == 2
    assert b"HIVE_SOCKET is not set" in proc.stderr and proc.stdout == b""

    env["HIVE_SOCKET"] = str(tmp_path / "nobody.sock")
    proc = await trio.run_process(
        RELAY,
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=b"",
    )
    assert proc.returncode == 1
    assert b"nobody.sock" in proc.stderr and proc.stdout == b""
