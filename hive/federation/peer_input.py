"""What another hive sends is input: its replies to operator verbs and its fleet row.

A peer may be an older or newer hive, a broken one, or a client holding a hive's NATS
credentials and nothing else. NATS proves *which* hive spoke (its user may answer only the
requests it received and write only its own key of the fleet bucket); nothing proves that
what it said is well formed. So every reply and every row is checked here before the rest
of hive sees it, and a malformed one becomes that hive's error, never an exception in the
code that serves the whole fleet (``hivectl list``, ``/api/fleet``).

>>> remote_result("beta", "status", {"name": "bob"}, b"\\xc1")
Traceback (most recent call last):
...
hive.wire.WireError: hive 'beta' sent a malformed reply to 'status': not msgpack
>>> fleet_row(b"\\x01")["error"]["code"]
'bad_row'
>>> from hive.wire import packb
>>> row = fleet_row(packb({"agents": [{"name": "bob"}, {"name": "bob@gamma"}], "ts": 5}))
>>> [a["name"] for a in row["agents"]], row["error"]["message"]
(['bob'], '1 of its 2 agent rows malformed (dropped)')
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from math import isfinite
from typing import Any, NoReturn, Union, get_args, get_origin, get_type_hints

from typing_extensions import is_typeddict

from hive.status import STATUS_FIELDS, AgentStatus
from hive.wire import WireError, unpackb, validate_agent_name

# A reply or a row larger than NATS's default max_payload is refused (a server configured
# for larger messages would otherwise let one peer put megabytes into every hive's view).
# The largest real reply, the questions list, is bounded at 256 KiB.
MAX_PEER_BYTES = 1 << 20
# Agents of one hive's row read at most: a full status row is about 600 bytes, so a real
# row under MAX_PEER_BYTES has fewer; 80,000 tiny forged rows took a quarter of a second to
# check, every second, and every page and `hivectl list` would have carried them all.
MAX_ROW_AGENTS = 2000
MAX_MESSAGE_CHARS = 2000  # of an error message a peer sends (it is shown as it is)
_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_STATUS_HINTS = get_type_hints(AgentStatus)


_NOT_MSGPACK = object()


def _decoded(raw: bytes) -> Any:
    try:
        return unpackb(raw)
    except Exception:  # msgpack raises several kinds (and ValueError for extra data)
        return _NOT_MSGPACK


def _bad_reply(hive: str, op: str, why: str) -> NoReturn:
    raise WireError("bad_reply", f"hive '{hive}' sent a malformed reply to '{op}': {why}")


def remote_result(hive: str, op: str, args: dict[str, Any], raw: bytes) -> Any:
    """The result of ``op`` that ``hive`` answered, checked; its own error raised as a
    WireError with its code (``hive 'beta': ...``); anything malformed is ``bad_reply``."""
    if len(raw) > MAX_PEER_BYTES:
        _bad_reply(hive, op, f"{len(raw)} bytes, over the limit of {MAX_PEER_BYTES}")
    reply = _decoded(raw)
    if reply is _NOT_MSGPACK:
        _bad_reply(hive, op, "not msgpack")
    if not isinstance(reply, dict):
        _bad_reply(hive, op, f"not a map but {type(reply).__name__}")
    if "error" in reply:
        code, message = _error_of(reply["error"])
        if code is None:
            _bad_reply(hive, op, "an error without a code and a message")
        raise WireError(code, f"hive '{hive}': {message}")
    if "result" not in reply:
        _bad_reply(hive, op, "neither a result nor an error")
    why = _RESULT_CHECKS[op](reply["result"], args)
    if op != "questions":  # its rows are checked one by one (question_row), and rebuilt
        why = why or _not_finite(reply["result"])
    if why:
        _bad_reply(hive, op, why)
    return reply["result"]


def _not_finite(value: Any) -> str:
    """Why a reply cannot be answered as JSON: NaN or Infinity anywhere in it (a browser's
    JSON reader refuses them). A walk with a stack, not recursion (msgpack bounds depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not isfinite(item):
            return "a number that is not finite"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return ""


def _error_of(error: Any) -> tuple[str | None, str]:
    """An error map's code and message (the message clipped); code None if malformed."""
    if not isinstance(error, dict):
        return None, ""
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not _CODE.fullmatch(code) or not isinstance(message, str):
        return None, ""
    return code, message[:MAX_MESSAGE_CHARS]


def _per_agent(result: Any, args: dict[str, Any]) -> str:
    """pause, resume, kick, restart: one result map per agent named, no other."""
    asked = args.get("names")
    asked = [asked] if isinstance(asked, str) else asked
    if not isinstance(result, dict) or not isinstance(result.get("agents"), dict):
        return "no per-agent results"
    agents = result["agents"]
    # Sets, not sorted lists: a peer's map may be keyed by numbers too (msgpack allows it).
    if not isinstance(asked, list) or not all(isinstance(n, str) for n in asked):
        return "results for other agents than those asked"
    if set(agents) != set(asked):
        return "results for other agents than those asked"
    for value in agents.values():
        if not isinstance(value, dict):
            return "an agent's result is not a map"
        if "error" in value and _error_of(value["error"])[0] is None:
            return "an agent's error without a code and a message"
    return ""


def _status(result: Any, args: dict[str, Any]) -> str:
    if not agent_row_ok(result):
        return "not an agent's status row"
    return "" if result["name"] == args.get("name") else "the status of another agent"


def _answer(result: Any, args: dict[str, Any]) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        return "no status of the question"
    if str(result.get("id")) != str(args.get("id")):
        return "the outcome of another question"
    if not isinstance(result.get("resolution") or {}, dict):
        return "a resolution that is not a map"
    return ""


def _questions(result: Any, args: dict[str, Any]) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("questions"), list):
        return "no question list"
    total = result.get("total")
    return "" if isinstance(total, int) and not isinstance(total, bool) else "no total"


_RESULT_CHECKS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "status": _status,
    "pause": _per_agent,
    "resume": _per_agent,
    "kick": _per_agent,
    "restart": _per_agent,
    "answer": _answer,
    "questions": _questions,
}


_QUESTION_HINTS: dict[str, Any] = {
    "id": int,
    "agent": str,
    "question": str,
    "requested_at": float | None,
    "expires_at": float | None,
    "ttl_remaining": float | None,
    "status": str,
}


def question_row(q: Any) -> dict[str, Any] | None:
    """One question of another hive's ``questions`` reply as the page renders it (its id,
    its agent's name, text, options of text, times), only those keys; None if malformed."""
    if not isinstance(q, dict) or "id" not in q:
        return None
    try:
        validate_agent_name(q.get("agent"))
    except WireError:
        return None
    if not all(_fits(q[k], h) for k, h in _QUESTION_HINTS.items() if k in q):
        return None
    options = q.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return None
    return {k: q[k] for k in (*_QUESTION_HINTS, "options") if k in q}


# --- the fleet bucket ------------------------------------------------------------------


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (decoded msgpack) has the type ``hint`` of a status row."""
    if get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        return any(_fits(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # finite: NaN and Infinity are not JSON (the dashboard's fetch fails)
        return isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if is_typeddict(hint):
        hints = get_type_hints(hint)
        return isinstance(value, dict) and all(
            _fits(value[k], h) for k, h in hints.items() if k in value
        )
    return False


def agent_row_ok(row: Any) -> bool:
    """An agent status row as this hive's tools show it: a valid agent name (never
    ``bob@gamma``: a hive's rows are its own agents) and every known field of its type.
    Fields a newer hive adds are allowed (``clean_agent`` drops them)."""
    if not isinstance(row, dict):
        return False
    try:
        validate_agent_name(row.get("name"))
    except WireError:
        return False
    return all(_fits(row[k], h) for k, h in _STATUS_HINTS.items() if k in row)


def hive_name_ok(name: str) -> bool:
    """Whether a key of the fleet bucket names a hive (only then is it shown)."""
    try:
        validate_agent_name(name)
    except WireError:
        return False
    return True


def _clean_agent(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in STATUS_FIELDS if k in row}


def _bad_row(why: str) -> dict[str, Any]:
    return {**_empty_row(), "error": {"code": "bad_row", "message": why}}


def _empty_row() -> dict[str, Any]:
    return {"agents": [], "outbox": {}, "connected": False, "questions": 0, "rtt": None,
            "lag": 0, "ts": time.time()}  # fmt: skip


# The fields of a hive's row (hive.federation.fleet.publish_status and the link), by type.
_ROW_FIELDS: dict[str, Any] = {
    "agents": list,
    "outbox": dict,
    "connected": bool,
    "questions": int,
    "rtt": float | None,
    "lag": int,
    "ts": float,
}


def fleet_row(raw: bytes) -> dict[str, Any]:
    """A hive's row from the fleet bucket, checked: only the known fields, each of its
    type, and only well-formed agent rows. A row that cannot be read is an empty row with
    ``error`` (code ``bad_row``) and the time it was read, so the hive is still listed,
    with what is wrong; malformed agent rows are dropped, and ``error`` says how many."""
    if len(raw) > MAX_PEER_BYTES:
        return _bad_row(f"a row of {len(raw)} bytes, over the limit of {MAX_PEER_BYTES}")
    row = _decoded(raw)
    if row is _NOT_MSGPACK:
        return _bad_row("not msgpack")
    if not isinstance(row, dict):
        return _bad_row(f"not a map but {type(row).__name__}")
    out = _empty_row()
    for key, hint in _ROW_FIELDS.items():
        if key not in row:
            continue
        value = row[key]
        ok = isinstance(value, hint) if hint in (list, dict) else _fits(value, hint)
        if not ok:
            return _bad_row(f"its field '{key}' is not of type {getattr(hint, '__name__', hint)}")
        out[key] = value
    outbox = out["outbox"]
    if not all(isinstance(k, str) and _fits(v, int) for k, v in outbox.items()):
        return _bad_row("its field 'outbox' is not a map of hive names to counts")
    given = out["agents"]
    kept = given[:MAX_ROW_AGENTS]
    out["agents"] = [_clean_agent(a) for a in kept if agent_row_ok(a)]
    problems = []
    if len(kept) > len(out["agents"]):
        dropped = len(kept) - len(out["agents"])
        problems.append(f"{dropped} of its {len(given)} agent rows malformed (dropped)")
    if len(given) > MAX_ROW_AGENTS:
        problems.append(f"{len(given)} agent rows, over the limit of {MAX_ROW_AGENTS} (the "
                        f"first {MAX_ROW_AGENTS} shown)")  # fmt: skip
    if problems:
        out["error"] = {"code": "bad_row", "message": "; ".join(problems)}
    return out
