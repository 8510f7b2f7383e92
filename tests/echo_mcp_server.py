"""A bare stdio MCP server with one tool, ``echo``.

Used as an agent's extra MCP server in the claude runtime tests, and as the baseline that
bench/bench_mcp.py compares hive-mcp against. Run it as a script: ``python echo_mcp_server.py``.
"""

from __future__ import annotations

import trio
from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer("echo", log_level="WARNING")


@server.tool(structured_output=False)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    trio.run(server.run_stdio_async)
