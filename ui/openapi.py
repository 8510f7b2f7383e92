"""The OpenAPI 3.1 description of the dashboard's JSON API, served at /api/openapi.json.

Written from the application itself, so it cannot drift: every /api route of the app (its
path, methods and path parameters), the view's docstring (summary, description) and the
view's annotations, the ones ``hive.ui.api.typed`` parses requests with: ``query`` (a model
of the query string), ``body`` (a model of the JSON body) and the return type (the reply).
Error replies come from the one code -> status table, ``hive.ui.calls``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, TypeAdapter
from quart import Quart, Response
from werkzeug.routing import Rule

from hive import __version__
from hive.ui.calls import _STATUS as STATUS_OF_CODE
from hive.ui.schemas import ErrorReply

REF = "#/components/schemas/{model}"

# Raised by the dashboard itself (authentication, CSRF, a slow actor), not a WireError code.
OWN_ERRORS = {401: ["unauthorized"], 403: ["csrf"], 504: ["timeout"], 501: ["not_available"]}


class Schemas:
    """The document's components/schemas, filled as operations refer to types."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def of(self, kind: Any) -> dict[str, Any]:
        schema = TypeAdapter(kind).json_schema(ref_template=REF)
        self.named.update(schema.pop("$defs", {}))
        title = schema.get("title")
        if schema.get("type") == "object" and isinstance(title, str) and "properties" in schema:
            self.named[title] = schema  # a named model or TypedDict: referenced, not inlined
            return {"$ref": REF.format(model=title)}
        return schema


def _error_responses(schemas: Schemas) -> dict[str, Any]:
    codes: dict[int, list[str]] = {}
    for code, status in STATUS_OF_CODE.items():
        codes.setdefault(status, []).append(code)
    for status, own in OWN_ERRORS.items():
        codes.setdefault(status, []).extend(own)
    error = schemas.of(ErrorReply)
    return {
        str(status): {
            "description": "error.code: " + ", ".join(sorted(codes[status])),
            "content": {"application/json": {"schema": error}},
        }
        for status in sorted(codes)
    }


def _path_of(rule: Rule) -> str:
    """/api/turns/<int:turn_id>/events -> /api/turns/{turn_id}/events"""
    out = rule.rule
    for name in rule.arguments:
        for converter in ("", "int:", "path:"):
            out = out.replace(f"<{converter}{name}>", "{" + name + "}")
    return out


def _parameters(rule: Rule, hints: dict[str, Any], schemas: Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "integer" if hints.get(name) is int else "string"}}
        for name in sorted(rule.arguments)
    ]  # fmt: skip
    query = hints.get("query")
    if isinstance(query, type) and issubclass(query, BaseModel):
        fields = query.model_json_schema(ref_template=REF).get("properties", {})
        for name, schema in fields.items():
            schema.pop("title", None)
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _reply(rule: Rule, hints: dict[str, Any], schemas: Schemas) -> dict[str, Any]:
    if rule.websocket:
        return {"101": {"description": "Switching to a websocket"}}
    kind = hints.get("return")
    if rule.rule.endswith("/stream"):
        return {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
    schema = {"type": "object"} if kind is Response else schemas.of(kind)
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def _operation(view: Callable[..., Any], rule: Rule, schemas: Schemas) -> dict[str, Any]:
    hints = get_type_hints(view)
    summary, _, description = (inspect.getdoc(view) or "").partition("\n")
    op: dict[str, Any] = {
        "operationId": rule.endpoint.replace(".", "_"),
        "summary": summary.strip().rstrip("."),
        "parameters": _parameters(rule, hints, schemas),
        "responses": _reply(rule, hints, schemas),
    }
    if description.strip():
        op["description"] = description.strip()
    body = hints.get("body")
    if body is not None:
        op["requestBody"] = {
            "required": any(f.is_required() for f in body.model_fields.values()),
            "content": {"application/json": {"schema": schemas.of(body)}},
        }
    return op


def openapi_document(app: Quart) -> dict[str, Any]:
    """The document for ``app``'s /api routes."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    errors = _error_responses(schemas)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        view = inspect.unwrap(app.view_functions[rule.endpoint])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = _operation(view, rule, schemas)
            if rule.rule != "/api/openapi.json":
                op["responses"].update(errors)
            if method == "POST":
                op["security"] = [{"cookie": [], "csrf": []}, {"bearer": [], "csrf": []}]
            paths.setdefault(_path_of(rule), {})[method.lower()] = op
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
            "schemas": dict(sorted(schemas.named.items())),
            "securitySchemes": {
                "cookie": {"type": "apiKey", "in": "cookie", "name": "hive_operator"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
        "security": [{"cookie": []}, {"bearer": []}],
        "paths": paths,
    }
