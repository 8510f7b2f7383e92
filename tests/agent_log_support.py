"""What the agent-log tests share: an agent whose stderr is hostile, and what its log must
show (tests/test_agent_logs.py on agent.log, tests/test_agent_logs_journald.py on a real
journald)."""

from __future__ import annotations

import json
import re
from typing import Any

from hive.io.streams import STDERR_LINE_BYTES

HUGE = 100_000
# What bob writes to stderr on "noise": each piece is one write, no newline added.
NOISE = [
    b"plain line from bob\n",
    b"carriage\rreturn, \x1b[31mescape\x1b[0m, \xe2\x80\xa8 and \x0b vertical tab\n",
    b"binary \xff\xfe\x00\x01 end\n",
    b"x\nAGENT=other\n",
    b"TURN=999 PRIORITY=0 _UID=0 SYSLOG_IDENTIFIER=sshd\n",
    b"y" * HUGE + b"\n",
    b"tab\there\n",
    b"no newline at the end",
]
# A crash whose detail (the message body) tries to add fields to the journal entry.
BOOM = "boom\nAGENT=other\nTURN=999\nPRIORITY=0"

CONFIG = f"""
[hive]
backoff_initial = 0.2

[[agent]]
name = "bob"
[[agent.script]]
match = "noise"
do = [{{op = "stderr", hex = "{b"".join(NOISE).hex()}"}}]
[[agent.script]]
match = "boom"
do = [{{op = "exit", code = 3, class = "crash", detail = "{{body}}", times = 1}}]
"""


def noise_texts() -> list[str]:
    """The stderr lines as hive keeps them: split at newlines only, cut, decoded."""
    out = []
    for raw in b"".join(NOISE).split(b"\n"):
        if len(raw) > STDERR_LINE_BYTES:
            marker = (
                f" [hive: line cut at {STDERR_LINE_BYTES} bytes, "
                f"{len(raw) - STDERR_LINE_BYTES} more bytes dropped]"
            )
            out.append(raw[:STDERR_LINE_BYTES].decode() + marker)
        else:
            out.append(raw.decode("utf-8", "replace"))
    return out


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d "


def text_of(line: str) -> str:
    """A viewer's line without its time and its ``turn=N``/``hive:`` tag."""
    match = re.match(STAMP + r"(turn=\S+|hive:) ?", line)
    assert match, f"not a log line: {line[:200]!r}"
    return line[match.end() :]


def tag_of(line: str) -> str:
    match = re.match(STAMP + r"(turn=\S+|hive:)", line)
    assert match, f"not a log line: {line[:200]!r}"
    return match[1]


def boom_lines(turn: int) -> list[str]:
    """The note of the crash, as the viewers show it (without times)."""
    first, *rest = BOOM.split("\n")
    return [f"turn {turn} of bob ended: crash {first}", *rest]


def contains_run(haystack: list[str], needle: list[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as consecutive items."""
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def journal_messages(json_lines: str) -> list[dict[str, Any]]:
    """journalctl -o json output: each entry, MESSAGE decoded (a byte list for binary)."""
    entries = []
    for raw in json_lines.splitlines():
        entry = json.loads(raw)
        message = entry.get("MESSAGE")
        if isinstance(message, list):
            entry["MESSAGE"] = bytes(message).decode("utf-8", "replace")
        entries.append(entry)
    return entries
