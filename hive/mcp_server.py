"""The hive's MCP tools, served by one MCP server inside hive-supervisor.

Each claude process runs a thin relay (``hive/mcp_relay.py``, stdlib only) that connects to
the agent's own socket and switches that connection to MCP mode; the session then runs here,
over that connection (``hive.io.mcp_transport``), so the agent's identity is the socket it
came in on. A tool decides nothing: it calls the socket's op of the same name in process
(``McpSession.caller``), and a refusal by the supervisor comes back to the model as a tool
error carrying the supervisor's message.

Manager-only tools (spawn, apply_commit, kick, schedule) are listed only to the manager; the
socket enforces that rule again on every call. Two servers are built, once per process
(``server_for``): one with the manager's tools, one without; a session learns whose it is
from a context variable (``SESSION``).
The SDK (~0.5 s of imports) is imported in a worker thread (``AgentSockets.mcp_loaded``): at
the daemon's start when some agent runs claude, else when the first session starts.
"""

import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

MAX_RECV_WAIT = 180  # seconds; the supervisor enforces the same bound

# No `from __future__ import annotations` here: the tools' Annotated[..., Field(...)] aliases
# are locals of the _add_*_tools functions, and the SDK reads the signatures as live objects.
_ToolFn = Callable[..., Awaitable[str]]


class HiveCaller(Protocol):
    """What the tools need: one op on the agent's socket, its result (or a HiveError)."""

    async def call(self, op: str, **args: Any) -> Any: ...


@dataclass
class McpSession:
    """One agent's MCP session: who it is, how its tools reach the socket's ops, and the
    message ids each reply carries, acknowledged once that reply is written (``held``)."""

    caller: HiveCaller
    name: str
    manager: bool
    held: dict[str, list[int]] = field(default_factory=dict)  # JSON-RPC id -> message ids

    def hold(self, ids: list[int]) -> None:
        """Keep ``ids`` until the answer to the running request has been written."""
        self.held.setdefault(request_key(REQUEST_ID.get()), []).extend(ids)


# Set by the transport: the session of the connection, and (per incoming message, through
# the SDK's per-message context) the JSON-RPC id of the request a tool is answering.
SESSION: ContextVar[McpSession] = ContextVar("hive_mcp_session")
REQUEST_ID: ContextVar[object] = ContextVar("hive_mcp_request_id", default=None)


def request_key(request_id: object) -> str:
    """A JSON-RPC id as a dict key: 1 and "1" are different ids."""
    return json.dumps(request_id)


def instructions(manager: bool) -> str:
    """The server instructions: how to behave as a hive agent, shown to the model. They do
    not name the agent (one server serves them all; the system prompt names it)."""
    role = (
        "You are the manager of this hive: you coordinate the other agents and may request "
        "new agents, config changes, kicks and scheduled prompts (each needs the operator's "
        "approval)."
        if manager
        else "Report to 'manager' when you finish a task or are blocked."
    )
    return (
        "You are an agent in a hive: a fleet of long-lived agents that talk through "
        "messages. Your turn started because messages arrived; they are in the prompt. "
        "Reply and delegate with `send`; wait for answers inside a turn with `recv`; ask a "
        "human with `ask_operator` only when you cannot decide alone; keep `set_status` "
        f"short and current. {role}"
    )


def format_messages(messages: list[dict[str, Any]]) -> str:
    """Messages from ``recv`` in the same shape as a turn prompt, oldest first."""
    from hive.runtimes.base import format_turn_prompt
    from hive.wire import Envelope

    return format_turn_prompt([Envelope.from_wire(m) for m in messages], None)


def build_server(manager: bool) -> "MCPServer[Any]":
    """An MCPServer whose tools forward to the socket ops of the session they run in."""
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[Any] = MCPServer(
        "hive", instructions=instructions(manager), version="1", log_level="WARNING"
    )

    def tool(fn: _ToolFn) -> _ToolFn:
        # Plain text results: the model reads them; no structured-output schema to carry.
        server.add_tool(fn, structured_output=False)
        return fn

    call = _forwarder()
    _add_message_tools(tool, call)
    _add_operator_tools(tool, call)
    if manager:
        _add_spawn_tools(tool, call)
        _add_fleet_tools(tool, call)
    return server


_SERVERS: dict[bool, "MCPServer[Any]"] = {}


def preload() -> None:
    """Import the SDK and build both servers (~0.5 s): once, in a worker thread, through
    ``AgentSockets.mcp_loaded``, which every session waits for (so no two run at once)."""
    for manager in (False, True):
        if manager not in _SERVERS:
            _SERVERS[manager] = build_server(manager)


def server_for(manager: bool) -> "MCPServer[Any]":
    """The server for an agent (with the manager's tools or without), built once."""
    if manager not in _SERVERS:
        preload()
    return _SERVERS[manager]


_Tool = Callable[[_ToolFn], _ToolFn]
_Call = Callable[..., Awaitable[Any]]


def _forwarder() -> _Call:
    """``call(op, **args)``: one op on the current session's socket (unset optional
    arguments left out). Message ids the result carries are held until the answer is
    written; a refusal becomes a ToolError the model can read."""
    from mcp.server.mcpserver.exceptions import ToolError

    from hive.client import ConnectionLost, HiveError, ack_ids

    async def call(op: str, **args: Any) -> Any:
        session = SESSION.get()
        try:
            result = await session.caller.call(
                op, **{k: v for k, v in args.items() if v is not None}
            )
        except ConnectionLost as exc:
            raise ToolError(
                f"lost the connection to the hive supervisor ({exc}); it may be restarting. "
                "The call may not have reached it; end your turn, you will be woken again."
            ) from exc
        except HiveError as exc:
            raise ToolError(f"{exc.message} [{exc.code}]") from exc
        ids = ack_ids(result)
        if ids:
            session.hold(ids)
        return result

    return call


def _add_message_tools(tool: _Tool, call: _Call) -> None:
    """Every agent's messaging: ``send`` and ``recv``."""
    from typing import Annotated

    from pydantic import Field

    # Annotated aliases keep the signatures readable; pydantic turns them into JSON schema.
    AgentName = Annotated[str, Field(description="agent name, or 'manager' / 'operator'")]
    Body = Annotated[str, Field(description="the message text (markdown is fine)")]
    WaitSeconds = Annotated[
        int, Field(ge=0, le=MAX_RECV_WAIT, description="seconds to wait for a message, 0-180")
    ]

    @tool
    async def send(to: AgentName, body: Body) -> str:
        """Send a message to another agent, to 'manager' or to 'operator' (the human).

        The message is stored and delivered even if the recipient is busy or asleep: it starts
        the recipient's next turn. The hive may refuse (e.g. a recipient you are not allowed to
        message) and says why. Returns the message id.
        """
        result = await call("send", to=to, body=body)
        return f"sent to {to} as message #{result['id']}"

    @tool
    async def recv(wait_seconds: WaitSeconds = 0) -> str:
        """Fetch messages that arrived during this turn, waiting up to wait_seconds for one.

        Use it after `send` when you need the answer before you can go on; with 0 it only
        checks. Messages you receive here count as delivered. If nothing comes, end your turn:
        a new message wakes you up again.
        """
        result = await call("recv", wait_seconds=wait_seconds)
        messages = result.get("messages", [])
        if not messages:
            return f"no new messages (waited {wait_seconds} s)"
        return format_messages(messages)


def _add_operator_tools(tool: _Tool, call: _Call) -> None:
    """Every agent's line to the human: ``ask_operator``, ``cancel_question``, ``set_status``."""
    from typing import Annotated

    from pydantic import Field

    @tool
    async def ask_operator(
        question: Annotated[str, Field(description="one clear question for the human")],
        options: Annotated[
            list[str] | None, Field(description="suggested answers to pick from (optional)")
        ] = None,
        ttl_seconds: Annotated[
            int | None, Field(ge=1, description="give up after this many seconds (optional)")
        ] = None,
    ) -> str:
        """Ask the human operator a question and wait for the answer (this blocks).

        Use it for decisions you must not take alone (destructive actions, unclear goals,
        credentials). The call ends when the operator answers, cancels the question, or
        ttl_seconds pass. An expired question is not a "no": decide with what you know or ask
        again later.
        """
        result = await call(
            "ask_operator", question=question, options=options, ttl_seconds=ttl_seconds
        )
        return _answer_text(result, ttl_seconds)

    @tool
    async def cancel_question(
        id: Annotated[int, Field(description="the question id from ask_operator")],
    ) -> str:
        """Withdraw a question you asked the operator that is no longer needed."""
        await call("cancel_question", id=id)
        return f"question #{id} cancelled"

    @tool
    async def set_status(
        text: Annotated[str, Field(description="a short line, e.g. 'reviewing PR 12'")],
    ) -> str:
        """Set your status line on the operator's dashboard: what you are doing now.

        Keep it short and update it when your focus changes or you finish.
        """
        await call("set_status", text=text)
        return "status set"


def _answer_text(result: dict[str, Any], ttl_seconds: int | None) -> str:
    """How a question ended, told to the model."""
    qid = result.get("id")
    status = result.get("status")
    if status == "answered":
        return f"the operator answered question #{qid}: {result.get('answer', '')}"
    if status == "cancelled":
        return f"the operator cancelled question #{qid} without answering; do not wait for it"
    if status == "expired":
        return (
            f"question #{qid} expired after {ttl_seconds} s with no answer. This is not a "
            "refusal: decide with what you know, or ask again later"
        )
    return f"question #{qid}: {json.dumps(result)}"


def _done(what: str, result: Any) -> str:
    """A manager tool's reply: what happened, plus the supervisor's details if any."""
    if isinstance(result, dict) and result:
        return f"{what}: {json.dumps(result, sort_keys=True)}"
    return what


def _add_spawn_tools(tool: _Tool, call: _Call) -> None:
    """The manager's requests for new agents: in one step, or as a draft then its commit."""
    from typing import Annotated

    from pydantic import Field

    NewName = Annotated[
        str, Field(description="the new agent's name: a-z, 0-9 and '-', starting with a letter")
    ]
    Ref = Annotated[str, Field(description="a git commit ref in that agent's config repo")]

    @tool
    async def request_spawn(
        name: NewName,
        model: Annotated[str | None, Field(description="model for the agent (optional)")] = None,
        prompt: Annotated[
            str | None, Field(description="its standing instructions (optional)")
        ] = None,
    ) -> str:
        """Ask the operator to create a new agent with a default config (one step).

        The agent exists once the operator approves. For an agent that needs a prepared
        config, use request_spawn_draft and request_spawn_commit instead.
        """
        result = await call("request_spawn", name=name, model=model, prompt=prompt)
        return _done(f"spawn of '{name}' requested; waiting for the operator's approval", result)

    @tool
    async def request_spawn_draft(name: NewName) -> str:
        """Create a draft agent: its config repo and state dir, without starting it.

        Edit and commit its config, then call request_spawn_commit with the commit ref.
        """
        result = await call("request_spawn_draft", name=name)
        return _done(f"draft '{name}' created", result)

    @tool
    async def request_spawn_commit(name: NewName, ref: Ref) -> str:
        """Submit a draft agent's committed config for approval; approved, the agent starts.

        The operator sees the diff of that commit.
        """
        result = await call("request_spawn_commit", name=name, ref=ref)
        return _done(f"spawn of draft '{name}' at {ref} submitted for approval", result)


def _add_fleet_tools(tool: _Tool, call: _Call) -> None:
    """The manager's hold on existing agents: config changes, kicks, scheduled prompts."""
    from typing import Annotated

    from pydantic import Field

    AgentName = Annotated[str, Field(description="an existing agent's name")]
    Ref = Annotated[str, Field(description="a git commit ref in that agent's config repo")]

    @tool
    async def request_apply_commit(agent: AgentName, ref: Ref) -> str:
        """Ask the operator to apply a config commit to an existing agent.

        On approval the agent is rebuilt from that commit; the operator sees the diff.
        """
        result = await call("request_apply_commit", agent=agent, ref=ref)
        return _done(f"config {ref} for '{agent}' submitted for approval", result)

    @tool
    async def kick_agent(
        name: AgentName,
        note: Annotated[str | None, Field(description="why it should wake up (optional)")] = None,
    ) -> str:
        """Wake an idle agent so it takes a turn now, with an optional note."""
        await call("kick_agent", name=name, note=note)
        return f"kicked '{name}'"

    @tool
    async def schedule_prompt(
        agent: AgentName,
        at: Annotated[
            str, Field(description="when, as ISO 8601 with a zone, e.g. 2026-12-01T09:00:00Z")
        ],
        text: Annotated[str, Field(description="the prompt the agent receives then")],
    ) -> str:
        """Ask the operator to approve a prompt that is delivered to an agent at a given time."""
        result = await call("schedule_prompt", agent=agent, at=at, text=text)
        return _done(f"prompt for '{agent}' at {at} submitted for approval", result)
