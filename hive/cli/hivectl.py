"""hivectl: the operator's command line, over the hive's admin socket.

    hivectl list                        every agent, one line each
    hivectl status alice                alice's full status row
    hivectl pending                     approvals and questions waiting for you
    hivectl approve 12 / deny 12 --reason "not now" / answer 13 "yes, go ahead"
    hivectl stop alice bob [--hard]     and start, restart, pause, resume, kick, cancel
    hivectl transcript 42 / transcript alice   a turn's events (alice: her newest turn)
    hivectl login alice                 log alice in again on this terminal, then resume her
    hivectl clear-mail [--from bob]     empty your mailbox (after mailbox_full)
    hivectl --json list                 machine-readable output for scripts

The socket is --socket, else $HIVE_ADMIN_SOCKET, else /run/hive/admin.sock. On an error
hivectl prints the daemon's message and exits 1 (3 if it cannot reach the daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TextIO

from hive.cli.login import add_arguments as login_arguments
from hive.client import ConnectionLost, HiveError, SyncClient
from hive.status import STATUS_FIELDS, state_of

DEFAULT_SOCKET = "/run/hive/admin.sock"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class Failed(Exception):
    """Some of the work failed; the output already says what."""


# --- output ---------------------------------------------------------------------------

# What must never reach the operator's terminal raw: agents write status texts, questions,
# message bodies and their own agent.log, and a terminal obeys what it is sent (ESC ] 0 ;
# sets the window title, ESC [ 2 J clears the screen, OSC 8 makes hidden links, \r overwrites
# a line, bidi overrides reorder what is shown). C0 controls, DEL, C1 controls and the bidi
# embedding/override/isolate characters are shown as escapes instead.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: Any, keep: str = "") -> str:
    """``text`` with every control character shown as ``\\xNN`` / ``\\uNNNN``, except those
    in ``keep`` (a whole output keeps its newlines and tabs; a table cell keeps none).

    >>> terminal_safe("\\x1b]0;owned\\x07hi\\u202e")
    '\\\\x1b]0;owned\\\\x07hi\\\\u202e'
    """
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m), str(text))


def say(text: str, file: TextIO | None = None) -> None:
    """Print human-readable output: every such line goes through here (``--json`` does
    not: JSON escapes control characters itself, and its text stays exact)."""
    print(terminal_safe(text, keep="\n\t"), file=file or sys.stdout, flush=True)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]]
    cells += [["" if c is None else terminal_safe(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    return duration((now or time.time()) - ts) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def clip(text: Any, width: int = 60) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def agent_lines(rows: Iterable[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        last = r.get("last_turn") or {}
        last_txt = f"{last.get('exit_class')} {ago(last.get('ended_at'))}" if last else "-"
        out.append(
            [
                r.get("name"),
                state_of(r),
                r.get("active_model"),
                r.get("inbox_depth"),
                last_txt,
                clip(r.get("queue_reason") or r.get("status_text"), 40),
            ]
        )
    return table(out, ["NAME", "STATE", "MODEL", "INBOX", "LAST TURN", "STATUS"])


def pending_lines(rows: Iterable[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        ttl = r.get("ttl_remaining")
        what = r.get("question") if r.get("kind") == "question" else r.get("description")
        out.append(
            [
                r.get("id"),
                r.get("kind"),
                r.get("agent"),
                ago(r.get("requested_at")),
                duration(ttl) if ttl is not None else "-",
                clip(what, 70),
            ]
        )
    return table(out, ["ID", "KIND", "AGENT", "ASKED", "TTL", "WHAT"])


def pending_configs(rows: Iterable[dict[str, Any]]) -> str:
    """For each spawn or config change: the config that takes effect if approved, drawn by
    hive from the parsed config (never the repo's own diff), sandbox and env included."""
    from hive.control.spawn import config_change

    blocks = []
    for r in rows:
        details = r.get("details") or {}
        after = details.get("config")
        if not isinstance(after, dict):
            continue
        before = details.get("config_before")
        text = config_change(before if isinstance(before, dict) else None, after)
        head = f"#{r.get('id')} {r.get('kind')} of '{r.get('agent')}': what takes effect"
        blocks.append("\n".join([head, *("    " + line for line in text.splitlines())]))
    return "\n\n".join(blocks)


def pending_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing pending"
    configs = pending_configs(rows)
    return pending_lines(rows) + ("\n\n" + configs if configs else "")


def per_agent(result: dict[str, Any], describe: Callable[[dict[str, Any]], str]) -> str:
    """Fan-out results: one line per agent; raise Failed (after printing) on any error."""
    lines, failed = [], False
    for name, r in sorted((result.get("agents") or {}).items()):
        if isinstance(r, dict) and "error" in r:
            failed = True
            lines.append(f"{name}: error: {terminal_safe(r['error'].get('message'))}")
        else:
            lines.append(f"{name}: {describe(r if isinstance(r, dict) else {})}")
    text = "\n".join(lines)
    if failed:
        say(text)
        raise Failed()
    return text


def print_result(args: argparse.Namespace, result: Any, human: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        text = human(result)
        if text:
            say(text)


# --- verbs ----------------------------------------------------------------------------

Handler = Callable[[SyncClient, argparse.Namespace], None]


def _status_text(row: dict[str, Any]) -> str:
    keys = list(STATUS_FIELDS)  # the row's own order (hive.status.AgentStatus)
    keys += sorted(k for k in row if k not in keys)
    lines = []
    for k in keys:
        if k not in row:
            continue
        v = row[k]
        if k == "last_turn" and isinstance(v, dict):
            v = (
                f"#{v.get('id')} {v.get('exit_class')} {ago(v.get('ended_at'))} "
                f"({duration(v.get('duration'))}) {v.get('detail') or ''}"
            ).strip()
        elif k in ("status_set_at", "retry_at") and isinstance(v, int | float):
            v = ago(v) if k == "status_set_at" else f"in {duration(v - time.time())}"
        lines.append(f"{k + ':':<19}{'-' if v is None else terminal_safe(v)}")
    return "\n".join(lines)


def v_version(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("version")
    print_result(a, r, lambda r: f"hive {r['version']} (protocol v{r['protocol']})")


def v_list(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("list")
    print_result(a, r, lambda r: agent_lines(r["agents"]) + fleet_lines(r))


def fleet_lines(r: dict[str, Any]) -> str:
    """A federated hive's list: the other hives' agents, then every hive's links."""
    if "fleet" not in r:
        return ""
    others = [h for h in r["fleet"] if h["hive"] != r.get("hive")]
    remote = []
    for h in others:
        for row in h.get("agents", []):
            last = row.get("last_turn") or {}
            remote.append([f"{row.get('name')}@{h['hive']}", state_of(row),
                           row.get("inbox_depth"), last.get("exit_class") or "-",
                           clip(row.get("status_text"), 40)])  # fmt: skip
    links = []
    for h in r["fleet"]:
        rtt = h.get("rtt")
        outbox = ", ".join(f"{d}:{n}" for d, n in sorted((h.get("outbox") or {}).items()))
        links.append([h["hive"], "yes" if h.get("connected") else "NO",
                      f"{rtt * 1000:.1f} ms" if rtt is not None else "-",
                      outbox or "0", h.get("lag", "-"), f"{h.get('age', 0):.0f}s ago"])  # fmt: skip
    out = ""
    if remote:
        out += "\n\n" + table(remote, ["AGENT@HIVE", "STATE", "INBOX", "LAST TURN", "STATUS"])
    header = ["HIVE", "CONNECTED", "RTT", "OUTBOX", "LAG", "SEEN"]
    # A row this hive could not read whole (hive.federation.peer_input): say so, per hive.
    bad = [f"{h['hive']}: {terminal_safe(h['error'].get('message'))} [{h['error'].get('code')}]"
           for h in r["fleet"] if isinstance(h.get("error"), dict)]  # fmt: skip
    return out + "\n\n" + table(links, header) + "".join("\n" + b for b in bad)


def v_status(c: SyncClient, a: argparse.Namespace) -> None:
    print_result(a, c.call("status", name=a.name), _status_text)


def v_subscribe(c: SyncClient, a: argparse.Namespace) -> None:
    kinds = [k for k in (a.kinds or "").split(",") if k]
    args: dict[str, Any] = {"kinds": kinds or None}
    if a.backlog:
        args["backlog"] = a.backlog
    for seen, frame in enumerate(c.stream("subscribe", **args), start=1):
        if a.json:
            print(json.dumps(frame, sort_keys=True, default=str), flush=True)
        else:
            say(_describe_push(frame))
        if a.count and seen >= a.count:
            return


def _describe_push(frame: dict[str, Any]) -> str:
    data = frame.get("data") or {}
    if frame.get("push") == "snapshot":
        items = data.get("items", {})
        sizes = ", ".join(f"{len(v)} {k}" for k, v in sorted(items.items()))
        return f"snapshot at seq {data.get('seq')}: {sizes or 'nothing'}"
    if data.get("kind") == "gap":
        return f"GAP: {data.get('dropped')} updates dropped (reader too slow); run `hivectl list`"
    body = data.get("data")
    if body is None:
        summary = "(gone)"
    elif data.get("kind") == "agent":
        summary = (
            f"{state_of(body)} inbox={body.get('inbox_depth')} model={body.get('active_model')}"
        )
    elif data.get("kind") in ("approval", "question"):
        summary = f"{body.get('status')}: {clip(body.get('question') or body.get('description'))}"
    else:
        summary = clip(json.dumps(body, sort_keys=True, default=str), 100)
    return f"{data.get('seq')} {data.get('kind')} {data.get('key')} {summary}"


def _control(verb: str, describe: Callable[[dict[str, Any]], str]) -> Handler:
    def run(c: SyncClient, a: argparse.Namespace) -> None:
        extra: dict[str, Any] = {}
        if getattr(a, "hard", False):
            extra["hard"] = True
        if getattr(a, "note", None):
            extra["note"] = a.note
        r = c.call(verb, names=a.names, **extra)
        print_result(a, r, lambda r: per_agent(r, describe))

    return run


def v_cancel(c: SyncClient, a: argparse.Namespace) -> None:
    if a.id is not None:
        args: dict[str, Any] = {"id": a.id}
        if a.reason:
            args["reason"] = a.reason
        r = c.call("cancel", **args)
        print_result(a, r, _resolved_text)
        return
    if not a.names:
        raise HiveError(
            "empty_scope", "cancel needs agent names (running turns) or --id (an approval)"
        )
    r = c.call("cancel", names=a.names)
    print_result(
        a,
        r,
        lambda r: per_agent(
            r, lambda x: "turn cancelled" if x.get("cancelled") else "no turn running"
        ),
    )


def v_send(c: SyncClient, a: argparse.Namespace) -> None:
    body = sys.stdin.read() if a.body == "-" else a.body
    r = c.call("send", to=a.to, body=body)
    print_result(a, r, lambda r: f"sent as message #{r['id']}")


def v_clear_mail(c: SyncClient, a: argparse.Namespace) -> None:
    args: dict[str, Any] = {}
    if a.sender:
        args["sender"] = a.sender
    if a.before is not None:
        args["before_id"] = a.before
    r = c.call("clear_mail", **args)
    print_result(a, r, lambda r: f"deleted {r['deleted']} message(s) from your mailbox")


def v_model(c: SyncClient, a: argparse.Namespace) -> None:
    args: dict[str, Any] = {"names": [a.name]}
    if a.model:
        args["model"] = a.model
    if a.force:
        args["force"] = True
    r = c.call("model", **args)
    print_result(a, r, lambda r: per_agent(r, lambda x: str(x.get("model"))))


def v_pending(c: SyncClient, a: argparse.Namespace) -> None:
    args = {"agent": a.agent} if a.agent else {}
    r = c.call("pending", **args)
    print_result(a, r, lambda r: pending_text(r["pending"]))


def _resolved_text(r: dict[str, Any]) -> str:
    what = "question" if r.get("kind") == "question" else f"{r.get('kind')} approval"
    if r.get("state"):  # a scheduled prompt
        return f"scheduled prompt #{r['id']}: {r['state']}"
    text = f"{what} #{r.get('id')}: {r.get('status')}"
    error = (r.get("resolution") or {}).get("error")
    return text + (f" ({error})" if error else "")


def v_approve(c: SyncClient, a: argparse.Namespace) -> None:
    results, failed = [], False
    for item_id in a.ids:
        try:
            r = c.call("approve", id=item_id)
        except HiveError as exc:
            failed = True
            results.append({"id": item_id, "error": {"code": exc.code, "message": exc.message}})
            say(f"hivectl: #{item_id}: {exc.message} [{exc.code}]", file=sys.stderr)
            continue
        results.append(r)
        failed = failed or r.get("status") == "failed"
        if not a.json:
            say(_resolved_text(r))
    if a.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2, sort_keys=True))
    if failed:
        raise Failed()


def v_deny(c: SyncClient, a: argparse.Namespace) -> None:
    args: dict[str, Any] = {"id": a.id}
    if a.reason:
        args["reason"] = a.reason
    print_result(a, c.call("deny", **args), _resolved_text)


def v_answer(c: SyncClient, a: argparse.Namespace) -> None:
    text = sys.stdin.read().rstrip("\n") if a.answer == "-" else a.answer
    args: dict[str, Any] = {"id": a.id, "answer": text}
    if a.hive:
        args["hive"] = a.hive  # the question of an agent on another hive
    print_result(a, c.call("answer", **args), _resolved_text)


def v_approvals(c: SyncClient, a: argparse.Namespace) -> None:
    args: dict[str, Any] = {"limit": a.limit}
    if a.status:
        args["status"] = a.status
    if a.agent:
        args["agent"] = a.agent
    r = c.call("approvals", **args)

    def human(r: dict[str, Any]) -> str:
        rows = [
            [x["id"], x["kind"], x["agent"], x["status"], ago(x["requested_at"]),
             clip(x.get("question") or x["description"], 60)]
            for x in r["approvals"]
        ]  # fmt: skip
        return table(rows, ["ID", "KIND", "AGENT", "STATUS", "ASKED", "WHAT"])

    print_result(a, r, human)


def v_drafts(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("drafts")
    print_result(
        a,
        r,
        lambda r: table(
            [
                [d["name"], d["requested_by"], d["base_sha"][:12], d["config_dir"]]
                for d in r["drafts"]
            ],
            ["NAME", "BY", "BASE", "CONFIG DIR"],
        ),
    )


def v_scheduled(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("scheduled")
    print_result(
        a,
        r,
        lambda r: table(
            [
                [s["id"], s["agent"], f"in {duration(s['at'] - time.time())}", clip(s["text"])]
                for s in r["scheduled"]
            ],
            ["ID", "AGENT", "DUE", "TEXT"],
        ),
    )


def v_spawn(c: SyncClient, a: argparse.Namespace) -> None:
    args: dict[str, Any] = {"name": a.name}
    for key in ("model", "prompt", "runtime", "sandbox", "parent"):
        value = getattr(a, key)
        if value:
            args[key] = value
    r = c.call("spawn", **args)
    print_result(a, r, lambda r: f"spawned {r.get('agent', a.name)}")


def v_destroy(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("destroy", names=a.names, purge=a.purge)

    def describe(x: dict[str, Any]) -> str:
        what = "draft discarded" if x.get("draft_discarded") else "destroyed"
        state = "state deleted" if x.get("purged") else f"state kept in {x.get('state_dir')}"
        return f"{what}, {state}"

    print_result(a, r, lambda r: per_agent(r, describe))


def cost_lines(r: dict[str, Any]) -> str:
    """Spend per agent (today, 7 days) and per model (7 days), from the cost verb."""
    week = {row["key"]: row for row in r["agents_7d"]}
    today = {row["key"]: row for row in r["agents_today"]}
    rows = []
    for name in sorted(week):
        t, w = today.get(name, {}), week[name]
        tokens = w["input_tokens"] + w["output_tokens"]
        rows.append(
            (name, f"${t.get('cost_usd', 0):.4f}", f"${w['cost_usd']:.4f}", w["turns"], tokens)
        )
    out = [f"cost on {r['today']} (UTC) and the 7 days to it"]
    out.append(
        table(rows, ["AGENT", "TODAY", "7 DAYS", "TURNS", "TOKENS IN+OUT"])
        if rows
        else "no turn has reported a cost yet"
    )
    models = [(m["key"], f"${m['cost_usd']:.4f}", m["turns"]) for m in r["models_7d"]]
    if models:
        out.append(table(models, ["MODEL", "7 DAYS", "TURNS"]))
    budgets = r.get("budgets") or {}
    hive_budget = budgets.get("hive") or {}
    if hive_budget.get("usd") or hive_budget.get("tokens"):
        out.append(
            f"hive daily budget: ${hive_budget['usd']:g} / {hive_budget['tokens']} tokens (0: none)"
        )
    for name, b in (budgets.get("agents") or {}).items():
        out.append(f"{name} daily budget: ${b['usd']:g} / {b['tokens']} tokens (0: none)")
    return "\n".join(out)


def v_stats(c: SyncClient, a: argparse.Namespace) -> None:
    if not a.name:  # the hive's cost
        print_result(a, c.call("cost"), cost_lines)
        return
    r = c.call("stats", agent=a.name, since=-abs(a.window))

    def describe(r: dict[str, Any]) -> str:
        rows = []
        for key, value in r["summary"].items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v:g}" for k, v in value.items()) or "-"
            elif isinstance(value, float):
                value = f"{value:.3g}"
            rows.append((key, "-" if value is None else value))
        spent = cost_lines(r["cost"]) if "cost" in r else ""
        return (
            f"{r['agent']}, last {a.window:g} s\n" + table(rows, ["STAT", "VALUE"]) + "\n" + spent
        )

    print_result(a, r, describe)


FOLLOW_POLL_SECONDS = 1.0
FOLLOW_PAGE_LINES = 1000


def inbox_lines(r: dict[str, Any]) -> str:
    counts = r["counts"]
    sev = counts["by_severity"]
    head = (
        f"{counts['open']} open ({counts['new']} new): {sev['critical']} critical, "
        f"{sev['high']} high, {sev['info']} info; {r['total']} match"
    )
    rows = [
        (
            i["id"],
            i["severity"],
            i["state"],
            ago(i["updated_at"]),
            i["count"] if i["count"] > 1 else "",
            clip(i["title"], 40),
            clip(i["body"], 60),
        )
        for i in r["items"]
    ]
    return head + (
        "\n" + table(rows, ["ID", "SEVERITY", "STATE", "WHEN", "N", "WHAT", "DETAIL"])
        if rows
        else ""
    )


def v_inbox(c: SyncClient, a: argparse.Namespace) -> None:
    """List the attention inbox, or move items (IDS, or --all matching the filter)."""
    filters = {"severity": a.severity, "agent": a.agent, "kind": a.kind}
    filters = {k: v for k, v in filters.items() if v}
    if a.mark:
        args: dict[str, Any] = {"state": a.mark, **filters}
        if a.all:
            args.update(all=True, filter_state=a.state)
        else:
            args["ids"] = a.ids
        r = c.call("inbox_mark", **args)
        print_result(
            a,
            r,
            lambda r: (
                f"{r['changed']} item(s) now {r['state']}"
                if r["changed"]
                else f"nothing to mark: no such item is not {r['state']} already"
            ),
        )
        return
    if a.ids or a.all:
        print("hivectl: IDS and --all go with --mark new|seen|done", file=sys.stderr)
        raise Failed
    r = c.call("inbox", state=a.state, limit=a.limit, **filters)
    print_result(a, r, inbox_lines)


def v_logs(c: SyncClient, a: argparse.Namespace) -> None:
    r = c.call("logs", name=a.name, lines=a.lines)
    print_result(a, r, lambda r: "\n".join(terminal_safe(line, keep="\t") for line in r["lines"]))
    cursor = r["cursor"]
    sys.stdout.flush()  # the first page shows before the wait for more
    while a.follow:  # the daemon reads the log (journald or agent.log): ask what came after
        if not r.get("more"):
            time.sleep(FOLLOW_POLL_SECONDS)
        r = c.call("logs", name=a.name, lines=FOLLOW_PAGE_LINES, after=cursor)
        cursor = r["cursor"]
        for line in r["lines"]:
            if a.json:
                print(json.dumps(line), flush=True)
            else:
                say(terminal_safe(line, keep="\t"))


def v_raw(op: str, key: str) -> Handler:
    def run(c: SyncClient, a: argparse.Namespace) -> None:
        args: dict[str, Any] = {"limit": a.limit}
        if getattr(a, "agent", None):
            args["agent"] = a.agent
        r = c.call(op, **args)
        a.json = True
        print_result(a, r[key] if isinstance(r, dict) and key in r else r, str)

    return run


def v_noop(c: SyncClient, a: argparse.Namespace) -> None:
    """Verbs handled before any connection (login)."""


def v_transcript(c: SyncClient, a: argparse.Namespace) -> None:
    """One turn's events: by turn id, or an agent's newest turn."""
    turn_id = int(a.turn) if a.turn.isdigit() else None
    if turn_id is None:
        turns = c.call("turns", agent=a.turn, limit=1)["turns"]
        if not turns:
            print(f"hivectl: '{a.turn}' has no turns yet", file=sys.stderr)
            raise Failed
        turn_id = int(turns[0]["id"])
    r = c.call("transcript", turn_id=turn_id)

    def human(r: dict[str, Any]) -> str:
        lines = [f"turn #{turn_id}: {len(r['events'])} event(s)"]
        for ev in r["events"]:
            # ensure_ascii: control characters from the model or a tool print escaped.
            data = json.dumps(ev["data"], ensure_ascii=True, sort_keys=True)
            lines.append(f"{ev['seq']:>5}  {ev['kind']:<12} {data[:300]}")
        return "\n".join(lines)

    print_result(a, r, human)


def v_login(a: argparse.Namespace) -> None:
    """Runs on this terminal (the CLI's login in the agent's environment), not over the
    socket; the daemon is asked where the hive's state is, then told to reset the agent."""
    from hive.cli import login

    explicit = a.socket or os.environ.get("HIVE_ADMIN_SOCKET")
    offline = a.config or a.state_dir
    login.run(a, socket_path(a) if explicit or not offline else None)


# --- argument parsing -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hivectl",
        description="Control a running hive over its admin socket.",
        epilog="Run `hivectl VERB -h` for a verb's arguments.",
    )
    p.add_argument(
        "--socket", help=f"admin socket (default $HIVE_ADMIN_SOCKET or {DEFAULT_SOCKET})"
    )
    p.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    p.add_argument(
        "--timeout", type=float, default=None,
        help="seconds to wait for the daemon (default 60; stop and restart wait for the turn)",
    )  # fmt: skip
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = partial(_add_verb, sub)
    _agent_verbs(add)
    _control_plane_verbs(add)
    return p


Add = Callable[[str, Handler, str], argparse.ArgumentParser]


def _add_verb(sub: Any, name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
    sp: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    sp.set_defaults(fn=fn, verb=name)
    return sp


def _names(sp: argparse.ArgumentParser, nargs: str = "+") -> None:
    sp.add_argument("names", nargs=nargs, metavar="NAME", help="agent name(s)")


def _agent_verbs(add: Add) -> None:
    add("version", v_version, "the daemon's version and protocol")
    add("list", v_list, "every agent, one line each")
    add("status", v_status, "one agent's full status row").add_argument("name")
    sp = add("subscribe", v_subscribe, "print every state change as it happens")
    sp.add_argument("--kinds", help="comma-separated kinds (agent,approval,question,...)")
    sp.add_argument("--backlog", type=int, help="updates queued before a gap (default 1000)")
    sp.add_argument("--count", type=int, help="stop after this many frames")
    for verb, text, describe in (
        ("pause", "take no new turns (persisted)", lambda x: "paused"),
        ("resume", "take turns again", lambda x: "resumed"),
        ("start", "start stopped agents", lambda x: "started"),
        (
            "restart",
            "cancel the running turn, clear failed, start a turn now",
            lambda x: "restarted",
        ),
        ("reset", "clear failed / needs_login", lambda x: "reset"),
    ):
        _names(add(verb, _control(verb, describe), text))
    sp = add("stop", _control("stop", lambda x: "stopped"), "stop after the running turn")
    sp.add_argument("--hard", action="store_true", help="cancel the running turn now")
    _names(sp)
    sp = add("kick", _control("kick", lambda x: "kicked"), "wake agents for a turn")
    sp.add_argument("--note", help="why (the agent sees it)")
    _names(sp)
    sp = add("cancel", v_cancel, "cancel running turns, or an approval/question with --id")
    sp.add_argument("--id", type=int, help="approval, question or scheduled prompt id")
    sp.add_argument("--reason")
    _names(sp, "*")
    sp = add("send", v_send, "send a message as the operator")
    sp.add_argument("to")
    sp.add_argument("body", help="the text, or - to read it from stdin")
    sp = add("transcript", v_transcript, "one turn's events (a turn id, or an agent's newest)")
    sp.add_argument("turn", metavar="TURN_ID|AGENT")
    sp = add("login", v_noop, "log a needs_login agent in again on this terminal, then resume it")
    login_arguments(sp)
    sp = add("clear-mail", v_clear_mail, "delete your mail (makes room after mailbox_full)")
    sp.add_argument("--from", dest="sender", help="only the mail from this agent")
    sp.add_argument("--before", type=int, metavar="ID", help="only mail older than this id")
    sp = add("model", v_model, "show an agent's model, or set it (`default` resets)")
    sp.add_argument("name")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--force", action="store_true", help="a model not in [hive] models")


def _control_plane_verbs(add: Add) -> None:
    add("pending", v_pending, "approvals and questions waiting").add_argument("--agent")
    sp = add("approve", v_approve, "approve (and so run) requests")
    sp.add_argument("ids", nargs="+", type=int, metavar="ID")
    sp = add("deny", v_deny, "deny a request")
    sp.add_argument("id", type=int)
    sp.add_argument("--reason")
    sp = add("answer", v_answer, "answer an agent's question")
    sp.add_argument("id", type=int)
    sp.add_argument("answer", help="the answer, or - to read it from stdin")
    sp.add_argument("--hive", help="the hive whose question it is (federation)")
    sp = add("approvals", v_approvals, "approval history, newest first")
    sp.add_argument("--status")
    sp.add_argument("--agent")
    sp.add_argument("--limit", type=int, default=50)
    add("drafts", v_drafts, "the manager's spawn drafts")
    add("scheduled", v_scheduled, "approved prompts waiting for their time")
    sp = add("spawn", v_spawn, "create and start an agent now")
    sp.add_argument("name")
    for key in ("model", "prompt", "runtime", "sandbox", "parent"):
        sp.add_argument(f"--{key}")
    sp = add("destroy", v_destroy, "remove agents (state kept unless --purge)")
    sp.add_argument("--purge", action="store_true", help="delete their state dirs too")
    _names(sp)
    sp = add("stats", v_stats, "what the fleet cost (no NAME), or an agent's telemetry and cost")
    sp.add_argument("name", nargs="?")
    sp.add_argument("--window", type=float, default=3600, help="seconds back (default 3600)")
    sp = add("inbox", v_inbox, "what needs you, most severe first; --mark seen|done to file it")
    sp.add_argument("ids", nargs="*", type=int, metavar="ID")
    sp.add_argument("--mark", choices=("new", "seen", "done"), help="move the items to this state")
    sp.add_argument("--all", action="store_true", help="with --mark: every item the filter matches")
    sp.add_argument("--state", default="open", help="open (default), new, seen, done, all")
    sp.add_argument("--severity", help="at least: info, high, critical")
    sp.add_argument("--agent")
    sp.add_argument(
        "--kind", help="failed, needs_login, crash, over_budget, approval, question, mail"
    )
    sp.add_argument("--limit", type=int, default=50)
    sp = add("logs", v_logs, "the end of an agent's log")
    sp.add_argument("name")
    sp.add_argument("-n", "--lines", type=int, default=100)
    sp.add_argument("-f", "--follow", action="store_true")
    for verb, key, text in (
        ("messages", "messages", "an agent's messages (JSON)"),
        ("turns", "turns", "an agent's turns (JSON)"),
        ("events", "events", "events (JSON)"),
    ):
        sp = add(verb, v_raw(verb, key), text)
        sp.add_argument("agent", nargs="?" if verb == "events" else None)
        sp.add_argument("--limit", type=int, default=50)


def socket_path(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("HIVE_ADMIN_SOCKET") or DEFAULT_SOCKET)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.verb == "login":
        v_login(args)
        return
    path = socket_path(args)
    timeout = args.timeout
    if timeout is None:
        timeout = None if args.verb in ("subscribe", "stop", "restart", "logs") else 60.0
    elif timeout <= 0:
        timeout = None
    try:
        with SyncClient(path, timeout=timeout) as client:
            args.fn(client, args)
    except ConnectionLost as exc:
        hint = "" if os.path.exists(path) else " (is hive-supervisor running? see --socket)"
        say(f"hivectl: {exc.message}{hint}", file=sys.stderr)
        sys.exit(EXIT_UNREACHABLE)
    except HiveError as exc:
        say(f"hivectl: {exc.message} [{exc.code}]", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except TimeoutError:
        print(f"hivectl: no answer from the daemon within {timeout:g} s", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except Failed:
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
