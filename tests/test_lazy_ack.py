"""An out-of-turn ack's delivered mark is a lazy write: it rides in the next transaction
another write starts (or commits alone after ``ack_commit_wait_ms``), and the ack is
answered only after that commit.

What is checked on the real database file: the mark is there once the reply is; an ack
followed by a send commits in one transaction (counted in the WAL: transactions that touch
the messages table's pages); a kill -9 after the ack but before its reply gives the
messages again; an ack that was answered is never undone by a kill -9.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hive.config import ConfigError, HiveConfig
from hive.wire import FrameDecoder, encode_frame, request
from tests.hive_harness import RunningHive

MakeHive = Callable[..., RunningHive]

AGENTS = """
[[agent]]
name = "alice"

[[agent]]
name = "bob"
rate_limit_per_minute = 1000000
"""

# The default wait: an ack with no other traffic is answered after it.
DEFAULT = AGENTS

# A wait no test reaches: the mark commits only with another write, so the window between
# an ack and its commit can be held open and looked at. Retention's pass is kept out of it.
HELD = (
    """
[hive]
ack_commit_wait_ms = 600000
prune_interval = 3600
"""
    + AGENTS
)

WAL_HEADER = 32
FRAME_HEADER = 24


class RawConn:
    """Alice's socket, frames written and read by hand: a request can be sent without
    waiting for its reply, and whether a reply came can be looked at without blocking."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.decoder = FrameDecoder()
        self.frames: dict[int, dict[str, Any]] = {}

    def send(self, req_id: int, op: str, **args: Any) -> None:
        self.sock.sendall(encode_frame(request(req_id, op, **args)))

    def _read_some(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the daemon closed the connection"
        for frame in self.decoder.feed(data):
            assert isinstance(frame, dict), frame
            self.frames[int(frame["id"])] = frame

    def reply(self, req_id: int) -> Any:
        while req_id not in self.frames:
            self._read_some()
        frame = self.frames.pop(req_id)
        assert frame.get("ok"), frame
        return frame["result"]

    def has_reply(self, req_id: int) -> bool:
        while select.select([self.sock], [], [], 0)[0]:
            self._read_some()
        return req_id in self.frames

    def close(self) -> None:
        self.sock.close()


def states(hive: RunningHive, ids: list[int]) -> list[str]:
    with hive.db() as db:
        return [
            str(db.execute("SELECT state FROM messages WHERE id = ?", (i,)).fetchall()[0][0])
            for i in ids
        ]


def wal_transactions(hive: RunningHive) -> tuple[int, list[set[int]]]:
    """The WAL's salt and its committed transactions, oldest first: the pages each wrote."""
    data = (hive.state_dir / "hive.db-wal").read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    txns: list[set[int]] = []
    pages: set[int] = set()
    at = WAL_HEADER
    while at + FRAME_HEADER + page_size <= len(data):
        pgno, commit = struct.unpack(">II", data[at : at + 8])
        if data[at + 8 : at + 16] != salt:
            break  # frames of an older generation of the WAL, not committed in this one
        pages.add(pgno)
        if commit:
            txns.append(pages)
            pages = set()
        at += FRAME_HEADER + page_size
    return struct.unpack(">Q", salt)[0], txns


def message_pages(hive: RunningHive) -> set[int]:
    """Every page of the messages table and its indexes (SQLite's dbstat)."""
    with hive.db() as db:
        rows = db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'messages' OR name IN "
            "(SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages')"
        )
        return {int(r[0]) for r in rows}


def stats_depth(hive: RunningHive, agent: str) -> float | None:
    with hive.db() as db:
        rows = db.execute(
            "SELECT value FROM stats WHERE agent = ? AND key = 'inbox_depth' "
            "ORDER BY ts DESC, rowid DESC LIMIT 1",
            (agent,),
        ).fetchall()
    return float(rows[0][0]) if rows else None


def settle(hive: RunningHive, agent: str, depth: int) -> None:
    """Until nothing but the test writes: each poll commits what waits (a no-op admin
    write), until the agent's row shows ``depth`` and the Stats actor has stored it (a
    Stats row written later would commit a waiting ack's mark along)."""

    def quiet() -> bool:
        hive.admin("inbox_mark", state="done", ids=[2**40])  # a write that changes nothing
        return hive.status(agent)["inbox_depth"] == depth and stats_depth(hive, agent) == depth

    hive.wait_until(quiet, what=f"{agent}'s depth {depth} published and stored")


Wal = tuple[int, list[set[int]]]


def held_ack(hive: RunningHive, count: int) -> tuple[RawConn, list[int], Wal]:
    """Alice takes ``count`` messages, parks her next recv (request 3) and acknowledges
    them (request 2); returns once her Agent has the ack (a recv behind it on the same
    connection was answered), with the ack's reply not come and its mark not committed;
    and the WAL as it was before the ack."""
    hive.admin("pause", names=["alice"])  # the test plays alice's process
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(count)]
    settle(hive, "alice", count)
    conn = RawConn(hive.agent_socket("alice"))
    conn.send(1, "recv", wait_seconds=0)
    taken = conn.reply(1)
    assert taken["ack_ids"] == sent
    wal = wal_transactions(hive)
    conn.send(3, "recv", wait_seconds=60)  # the next recv waits: the mark may, too
    conn.send(2, "ack", ids=sent)
    conn.send(4, "recv", wait_seconds=0)  # handled by the Agent after the ack
    assert conn.reply(4)["messages"] == []
    assert not conn.has_reply(2), "the ack was answered before its mark committed"
    assert states(hive, sent) == ["pending"] * count, "the mark committed on its own"
    return conn, sent, wal


def given(hive: RunningHive, agent: str) -> list[int]:
    """What a recv gives ``agent`` now (not acknowledged: with HELD, an ack would wait for
    some other write to commit it)."""
    with hive.agent(agent) as c:
        return [m["id"] for m in c.request("recv", wait_seconds=0)["messages"]]


def test_an_ack_with_no_other_traffic_is_answered_with_its_mark_in_the_file(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(DEFAULT)
    hive.admin("pause", names=["alice"])
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(3)]
    conn = RawConn(hive.agent_socket("alice"))
    conn.send(1, "recv", wait_seconds=0)
    assert conn.reply(1)["ack_ids"] == sent
    conn.send(3, "recv", wait_seconds=60)  # parked: the mark is lazy
    conn.send(2, "ack", ids=sent)
    assert conn.reply(2) == {"acked": 3}
    # Answered: committed, by the deadline's own transaction (nothing else wrote).
    assert states(hive, sent) == ["delivered"] * 3
    conn.close()


def test_a_reader_waiting_for_its_acks_answer_gets_it_without_other_traffic(
    make_hive: MakeHive,
) -> None:
    """No recv parked: the reader asks for more only once answered, so the mark commits
    at once, not with the next send (even with a wait no test reaches)."""
    hive = make_hive(HELD)
    hive.admin("pause", names=["alice"])
    sent = [hive.admin("send", to="alice", body=f"m{i}")["id"] for i in range(3)]
    settle(hive, "alice", 3)
    with hive.agent("alice", timeout=20) as alice:
        assert alice.request("recv", wait_seconds=0)["ack_ids"] == sent
        assert alice.request("ack", ids=sent) == {"acked": 3}
    assert states(hive, sent) == ["delivered"] * 3


def test_an_ack_then_a_send_commit_in_one_transaction_and_then_the_ack_is_answered(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(HELD)
    conn, acked, (salt, before) = held_ack(hive, 2)
    with hive.agent("bob") as bob:
        sent = bob.call("send", to="alice", body="after the ack")["id"]
    assert conn.reply(2) == {"acked": 2}
    # Answered: the mark is in the file, with the send that carried it.
    assert states(hive, [*acked, sent]) == ["delivered", "delivered", "pending"]
    salt_after, after = wal_transactions(hive)
    assert salt_after == salt, "the WAL was reset meanwhile: cannot count its transactions"
    pages = message_pages(hive)
    touching = [t for t in after[len(before) :] if t & pages]
    assert len(touching) == 1, f"the mark and the send took {len(touching)} transactions"
    conn.close()


def test_kill_9_after_an_ack_before_its_commit_gives_the_messages_again(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(HELD)
    conn, acked, _ = held_ack(hive, 3)
    hive.kill()  # the ack reached the Agent; its mark waited for a commit; no reply
    conn.close()
    hive = hive.restart()
    assert states(hive, acked) == ["pending"] * 3
    assert given(hive, "alice") == acked, "at least once: every message comes again"


def test_an_ack_answered_on_a_sends_commit_never_comes_again_after_kill_9(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(HELD)
    conn, acked, _ = held_ack(hive, 3)
    with hive.agent("bob") as bob:
        sent = bob.call("send", to="alice", body="carries the mark")["id"]
    assert conn.reply(2) == {"acked": 3}
    hive.kill()
    conn.close()
    hive = hive.restart()
    assert states(hive, acked) == ["delivered"] * 3
    assert given(hive, "alice") == [sent], "the acknowledged ones never come again"


@pytest.mark.parametrize(
    ("value", "needle"), [("-1", "must be >= 0"), ('"5"', "number"), ("nan", "must be >= 0")]
)
def test_a_bad_ack_commit_wait_is_a_config_error_naming_the_key(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        HiveConfig.from_toml_text(f"[hive]\nack_commit_wait_ms = {value}\n")
    assert "ack_commit_wait_ms" in str(info.value) and needle in str(info.value)
    assert HiveConfig.from_toml_text("[hive]\nack_commit_wait_ms = 0\n").ack_commit_wait_ms == 0


def test_a_store_that_dies_with_a_mark_waiting_hands_it_to_the_next_one(
    make_hive: MakeHive,
) -> None:
    hive = make_hive(HELD, env={"HIVE_FAULT_INJECTION": "1"})
    conn, acked, _ = held_ack(hive, 2)
    hive.admin("inject_fault", target="store")  # it dies holding the mark (unfinished())

    def send() -> int:  # refused ("nothing was sent") while the Store restarts
        with hive.agent("bob") as bob:
            return int(bob.call("send", to="alice", body="through the next Store")["id"])

    sent = hive.wait_until(send, what="a send through the restarted Store")
    assert conn.reply(2) == {"acked": 2}
    assert states(hive, [*acked, sent]) == ["delivered", "delivered", "pending"]
    conn.close()
