"""A bare stdio MCP server with the tools ``echo`` and ``exit_now``.

Used as an agent's extra MCP server in the claude runtime and MCP pool tests, and as the
baseline that bench/bench_mcp.py compares the hive's MCP path against. Run it as a script:
``python echo_mcp_server.py``. With ``$ECHO_PID_FILE`` set it appends its pid to that file
when it starts (the pool tests count processes by it).
"""

from __future__ import annotations

import os

import trio
from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer("echo", log_level="WARNING")


@server.tool(structured_output=False)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool(structured_output=False)
async def exit_now(code: int = 3) -> str:
    """End this server's process at once (a crash, for tests)."""
    os._exit(code)


if __name__ == "__main__":
    if os.environ.get("ECHO_PID_FILE"):
        with open(os.environ["ECHO_PID_FILE"], "a") as pids:
            pids.write(f"{os.getpid()}\n")
    trio.run(server.run_stdio_async)
