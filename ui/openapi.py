"""The OpenAPI 3.1 description of the dashboard's JSON API, served at /api/openapi.json.

Written as a table (method, path, summary, parameters, body fields) and expanded into the
document, so adding an endpoint is one row. Tests check every route is in the table.
"""

from __future__ import annotations

from typing import Any

from hive import __version__

# (method, path, summary, query parameters, JSON body fields {name: (type, required)})
Row = tuple[str, str, str, dict[str, str], dict[str, tuple[str, bool]]]

ENDPOINTS: list[Row] = [
    ("get", "/api/session", "The CSRF token and which optional features this hive has", {}, {}),
    ("get", "/api/agents", "Every agent's status row", {}, {}),
    ("get", "/api/agents/{name}", "One agent's status row", {}, {}),
    ("get", "/api/agents/{name}/messages", "The agent's mail (both directions, newest first)",
     {"limit": "integer", "before": "integer", "state": "string"}, {}),
    ("post", "/api/agents/{name}/messages", "Send a message to the agent as the operator",
     {}, {"body": ("string", True)}),
    ("post", "/api/agents/{name}/kick", "Wake the agent for a turn", {},
     {"note": ("string", False)}),
    ("post", "/api/agents/{name}/pause", "Pause: no new turns (idempotent)", {}, {}),
    ("post", "/api/agents/{name}/resume", "Resume a paused agent", {}, {}),
    ("post", "/api/agents/{name}/cancel", "Cancel the running turn", {}, {}),
    ("post", "/api/agents/{name}/reset", "Clear failed / needs-login and crash history", {}, {}),
    ("post", "/api/agents/{name}/restart", "Reset, end a running turn, then kick", {}, {}),
    ("post", "/api/agents/{name}/stop", "Stop gracefully: the running turn finishes", {}, {}),
    ("post", "/api/agents/{name}/start", "Start a stopped agent", {}, {}),
    ("get", "/api/agents/{name}/turns", "The agent's turns, newest first", {"limit": "integer"},
     {}),
    ("get", "/api/turns/{turn_id}/events", "A turn's transcript", {}, {}),
    ("get", "/api/events", "Hive events (crashes, failures)",
     {"agent": "string", "limit": "integer"}, {}),
    ("get", "/api/operator/messages", "Messages to and from the operator",
     {"limit": "integer"}, {}),
    ("get", "/api/model", "An agent's active model", {"agent": "string"}, {}),
    ("post", "/api/model", "Set an agent's model (needs the control plane's `model` verb)", {},
     {"agent": ("string", True), "model": ("string", True)}),
    ("get", "/api/approvals", "Pending approvals, operator questions and drafts", {}, {}),
    ("post", "/api/approvals/{id}/approve", "Approve (runs the action at once)", {}, {}),
    ("post", "/api/approvals/{id}/deny", "Deny", {}, {"reason": ("string", False)}),
    ("post", "/api/questions/{id}/answer", "Answer an operator question", {},
     {"answer": ("string", True)}),
    ("post", "/api/questions/{id}/cancel", "Cancel an operator question", {}, {}),
    ("get", "/api/stats", "Turn telemetry series and a summary",
     {"agent": "string", "since": "number", "keys": "string"}, {}),
    ("get", "/api/agents/{name}/log", "The agent's log (journald, else its log file)",
     {"lines": "integer"}, {}),
    ("get", "/api/agents/{name}/log/stream", "Follow the agent's log (server-sent events)", {},
     {}),
    ("get", "/api/stream", "Server-sent events: a snapshot, then every state change",
     {"kinds": "string", "backlog": "integer"}, {}),
    ("get", "/api/agents/{name}/terminal",
     "Websocket: a PTY shell in the agent's sandbox (needs ?csrf=)", {"csrf": "string"}, {}),
    ("get", "/api/openapi.json", "This document", {}, {}),
]  # fmt: skip

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
}


def _operation(method: str, path: str, summary: str, query: dict[str, str],
               body: dict[str, tuple[str, bool]]) -> dict[str, Any]:  # fmt: skip
    params: list[dict[str, Any]] = []
    for segment in path.split("/"):
        if segment.startswith("{"):
            name = segment[1:-1]
            kind = "integer" if name in ("id", "turn_id") else "string"
            params.append({"name": name, "in": "path", "required": True,
                           "schema": {"type": kind}})  # fmt: skip
    for name, kind in query.items():
        params.append({"name": name, "in": "query", "required": False, "schema": {"type": kind}})
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"description": "Bad input", "content": {"application/json": {"schema": ERROR}}},
            "401": {"description": "Not logged in"},
            "403": {"description": "Missing or wrong CSRF token"},
            "404": {"description": "No such agent or item"},
        },
    }
    if method == "post":
        op["security"] = [{"cookie": [], "csrf": []}, {"bearer": [], "csrf": []}]
        op["requestBody"] = {
            "required": any(req for _, req in body.values()),
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {k: {"type": t} for k, (t, _) in body.items()},
                        "required": [k for k, (_, req) in body.items() if req],
                    }
                }
            },
        }
    if path.endswith("/stream"):
        op["responses"]["200"] = {"description": "An event stream",
                                  "content": {"text/event-stream": {}}}  # fmt: skip
    return op


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, query, body in ENDPOINTS:
        paths.setdefault(path, {})[method] = _operation(method, path, summary, query, body)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hive dashboard API",
            "version": __version__,
            "description": "Reads need the operator token (cookie `hive_operator` from /login, "
            "or `Authorization: Bearer <token>`); every POST also needs `X-CSRF-Token` "
            "(GET /api/session).",
        },
        "components": {
            "securitySchemes": {
                "cookie": {"type": "apiKey", "in": "cookie", "name": "hive_operator"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            }
        },
        "security": [{"cookie": []}, {"bearer": []}],
        "paths": paths,
    }
