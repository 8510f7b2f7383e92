"""Agents' logs in a real journald: hive-supervisor runs as its unit under a throwaway
systemd (tests/systemd_boot.py), a scripted agent writes hostile stderr and crashes with a
detail that tries to add journal fields, and ``hivectl logs`` (run in the namespace), the
dashboard's log API and ``journalctl AGENT=bob`` all show the same lines, following too."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent_log_support import (
    BOOM,
    CONFIG,
    boom_lines,
    contains_run,
    journal_messages,
    noise_texts,
    tag_of,
    text_of,
)
from tests.systemd_boot import HIVE_UNIT, VENV_BIN, BootedSystemd, boot_systemd, wait_until

HIVECTL = str(VENV_BIN / "hivectl")
PYTHON = str(VENV_BIN / "python")
DROPIN = "[Service]\nLimitCORE=0\n"
FOLLOW_SECONDS = 120.0
# The dashboard's log API, asked from inside the namespace (its network is the namespace's).
DASHBOARD_CLIENT = textwrap.dedent("""
    import json, sys, httpx
    token = open("/var/lib/hive/operator-token").read().strip()
    client = httpx.Client(base_url="http://127.0.0.1:8417", timeout=None,
                          headers={"Authorization": f"Bearer {token}"})
    if sys.argv[1] == "page":
        r = client.get("/api/agents/bob/log", params={"lines": sys.argv[2]})
        print(json.dumps({"status": r.status_code, "body": r.json()}))
    else:  # follow: each line as it comes, one JSON string per line
        with client.stream("GET", "/api/agents/bob/log/stream",
                           params={"after": sys.argv[2]}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    for shown in json.loads(line[6:])["lines"]:
                        print(json.dumps(shown), flush=True)
""")
# Another user on the host writes to the journal as if it were bob's log.
SPOOF = textwrap.dedent("""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"MESSAGE=spoofed by another uid\\nAGENT=bob\\nHIVE_STREAM=stderr\\nTURN=1\\n",
             "/run/systemd/journal/socket")
""")


@pytest.fixture(scope="module")
def systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystemd]:
    with boot_systemd(tmp_path_factory.mktemp("systemd")) as sd:
        sd.install_hive(CONFIG, dropin=DROPIN)
        sd.systemctl("start", HIVE_UNIT)
        sd.wait_state(HIVE_UNIT, "active")
        yield sd


def hivectl(sd: BootedSystemd, *args: str) -> Any:
    return json.loads(sd.run(HIVECTL, "--json", *args).stdout)


def dashboard_page(sd: BootedSystemd, lines: int) -> Any:
    out = json.loads(sd.run(PYTHON, "-c", DASHBOARD_CLIENT, "page", str(lines)).stdout)
    assert out["status"] == 200, out
    return out["body"]


def journal(sd: BootedSystemd, *matches: str) -> list[dict[str, Any]]:
    sd.run("journalctl", "--sync", check=False)
    out = sd.run("journalctl", "--no-pager", "--all", "-o", "json", *matches).stdout
    return journal_messages(out)


def journal_lines(entries: list[dict[str, Any]]) -> list[str]:
    """journalctl's messages, a line each (a multi-line message is several lines)."""
    return [piece for entry in entries for piece in entry["MESSAGE"].split("\n")]


def noise_shown(sd: BootedSystemd) -> list[str] | None:
    texts = [text_of(line) for line in hivectl(sd, "logs", "bob", "-n", "500")["lines"]]
    done = contains_run(texts, noise_texts()) and texts[-1].endswith("ended: ok ")
    return texts if done else None


def test_every_viewer_shows_what_journald_holds(systemd: BootedSystemd) -> None:
    sd = systemd
    sd.run(HIVECTL, "send", "bob", "noise")
    wait_until(lambda: noise_shown(sd), 60, "bob's stderr in hivectl logs")
    sd.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-c", SPOOF)
    cli = hivectl(sd, "logs", "bob", "-n", "500")
    api = dashboard_page(sd, 500)
    assert cli == api  # one verb, one reader: the same lines, source and cursor
    assert cli["source"] == "journald" and "path" not in cli
    ours = journal(sd, "AGENT=bob", "_UID=0")
    assert [text_of(line) for line in cli["lines"]] == journal_lines(ours)
    # Each stderr line is one entry with the agent's fields; its turn is the line's.
    stderr = [e for e in ours if e.get("HIVE_STREAM") == "stderr"]
    assert [e["MESSAGE"] for e in stderr] == noise_texts()
    turn = stderr[0]["TURN"]
    for entry in stderr:
        assert (entry["TURN"], entry["PRIORITY"], entry["SYSLOG_IDENTIFIER"]) == (
            turn, "6", "hive/bob"
        )  # fmt: skip
        assert entry["_SYSTEMD_UNIT"] == HIVE_UNIT
    shown = [line for line in cli["lines"] if text_of(line) in noise_texts()]
    assert {tag_of(line) for line in shown} == {f"turn={turn}"}
    # The fake fields in bob's output are text of bob's lines, not fields.
    assert journal(sd, "AGENT=other") == [] and journal(sd, "TURN=999") == []
    assert not [e for e in journal(sd, "SYSLOG_IDENTIFIER=sshd") if "bob" in str(e)]
    # What another uid sent as bob is in the journal, but not in bob's log.
    spoofed = [e for e in journal(sd, "AGENT=bob") if "spoofed" in e["MESSAGE"]]
    assert spoofed and spoofed[0]["_UID"] == "65534"
    assert not any("spoofed" in line for line in cli["lines"])


def test_following_shows_the_same_new_lines_and_the_crash_reason(
    systemd: BootedSystemd,
) -> None:
    sd = systemd
    cursor = hivectl(sd, "logs", "bob", "-n", "1")["cursor"]
    follow_cli = subprocess.Popen(
        [*sd.nsenter(), HIVECTL, "--json", "logs", "bob", "-n", "1", "--follow"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    follow_api = subprocess.Popen(
        [*sd.nsenter(), PYTHON, "-c", DASHBOARD_CLIENT, "follow", cursor],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    # A bound on the wait: past it the followers are ended, and reading them fails.
    deadline = threading.Timer(FOLLOW_SECONDS, lambda: [p.kill() for p in followers])
    followers = (follow_cli, follow_api)
    deadline.start()
    try:
        assert follow_cli.stdout is not None and follow_api.stdout is not None
        first = json.loads("".join(iter_until(follow_cli.stdout, "}\n")))
        assert first["cursor"] == cursor  # both follow from the same place
        sd.run(HIVECTL, "send", "bob", BOOM)
        from_cli = read_until_crash(follow_cli.stdout)
        from_api = read_until_crash(follow_api.stdout)
    finally:
        deadline.cancel()
        for process in followers:
            process.terminate()
            process.wait(timeout=30)
    assert from_cli == from_api
    texts = [text_of(line) for line in from_cli]
    at = next(i for i, t in enumerate(texts) if t.startswith("turn ") and "crash boom" in t)
    crash_turn = int(texts[at].split()[1])
    assert texts[at : at + 4] == boom_lines(crash_turn)
    # In the journal: one entry, the detail one multi-line value, a warning of bob's turn.
    (entry,) = [e for e in journal(sd, "AGENT=bob", "_UID=0") if "crash boom" in e["MESSAGE"]]
    assert entry["MESSAGE"] == f"turn {crash_turn} of bob ended: crash {BOOM}"
    assert (entry["TURN"], entry["PRIORITY"]) == (str(crash_turn), "4")
    assert journal(sd, "AGENT=other") == [] and journal(sd, "TURN=999") == []
    assert from_cli == hivectl(sd, "logs", "bob", "-n", str(len(from_cli)))["lines"]


def iter_until(stream: Any, last: str) -> Iterator[str]:
    while (line := stream.readline()) != last:
        assert line, "the follower ended"
        yield line
    yield line


def read_until_crash(stream: Any) -> list[str]:
    """Lines a follower printed, through the crash's note and the retry's clean end."""
    lines: list[str] = []
    crashed = False
    while True:
        raw = stream.readline()
        assert raw, f"the follower ended after {lines}"
        lines.append(json.loads(raw))
        text = text_of(lines[-1])
        crashed = crashed or "ended: crash boom" in text
        if crashed and text.endswith("ended: ok "):
            return lines
