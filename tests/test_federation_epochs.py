"""Link epochs: each start of a hive numbers its links afresh, so that a hive restored from
an older backup (which gives out again message ids and link numbers its peers have
stored) is not taken for a repeat and its new mail is not dropped.

The rules on the receiving end are checked one by one on ``LinkIn.place``; the sending
end on a real, migrated database file; and the whole story with two real supervisors on a
real nats-server, the sending hive's database put back to a copy taken earlier."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from hive.federation.store import (
    LinkIn,
    OutboxRow,
    begin_epoch,
    decode,
    queue_outbound,
)
from hive.store import Queries, connect, migrate
from hive.wire import Envelope, packb
from tests.federation_support import hive_config, nats, received, send_all
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture


def _msg(epoch: int, first: int, seq: int) -> dict[str, int]:
    return {"epoch": epoch, "first": first, "seq": seq}


def _places(link: LinkIn, msgs: list[tuple[int, int, int]]) -> list[str]:
    return [link.place(_msg(*m)) for m in msgs]


# --- the receiving end -----------------------------------------------------------------


def test_within_an_epoch_numbers_run_on_by_one() -> None:
    link = LinkIn(0, 0)
    assert _places(link, [(7, 1, 1), (7, 1, 2), (7, 1, 2), (7, 1, 4), (7, 1, 3)]) == [
        "next", "next", "duplicate", "gap", "next",
    ]  # fmt: skip
    assert (link.epoch, link.seq) == (7, 3)


def test_a_restart_with_mail_left_in_the_outbox_keeps_the_order() -> None:
    """Epoch 5 sent 1-10 and left 8-10 in its outbox; epoch 9 begins at 11. The new
    epoch's mail waits (gap) until the old epoch's is stored, even when it comes first."""
    link = LinkIn(5, 7)
    assert _places(link, [(9, 11, 11), (5, 1, 8), (5, 1, 9), (9, 11, 11)]) == [
        "gap", "next", "next", "gap",
    ]  # fmt: skip
    assert _places(link, [(5, 1, 10), (9, 11, 12), (9, 11, 11), (9, 11, 12)]) == [
        "next", "gap", "next", "next",
    ]  # fmt: skip
    assert (link.epoch, link.seq) == (9, 12)
    assert link.place(_msg(5, 1, 10)) == "duplicate"  # the old epoch, published again


def test_a_sender_restored_from_an_older_backup_is_rebased_not_dropped() -> None:
    """This end stored up to 20 (epoch 6). The sender, restored to a copy taken at 10 in
    epoch 5, starts epoch 8 at 11: numbers this end has passed, but new mail."""
    link = LinkIn(6, 20)
    assert link.place(_msg(5, 1, 9)) == "duplicate"  # left in the copy's outbox: delivered
    assert _places(link, [(8, 11, 12), (8, 11, 11), (8, 11, 12), (8, 11, 13)]) == [
        "gap", "next", "next", "next",
    ]  # fmt: skip
    assert (link.epoch, link.seq) == (8, 13)


def test_a_receiver_restored_from_a_backup_stalls_until_set_by_hand() -> None:
    """This end's copy knows epoch 5 up to 10; the sender is at epoch 9 (first 40), and
    JetStream holds 50 on. 40-49 were stored only in the lost store: the link stalls, and
    the step docs/federation.md gives (the logged epoch, its number less one) frees it."""
    link = LinkIn(5, 10)
    assert _places(link, [(9, 40, 50), (9, 40, 51)]) == ["gap", "gap"]
    link = LinkIn(9, 49)  # UPDATE fed_links_in SET epoch = 9, seq = 49
    assert _places(link, [(9, 40, 50), (9, 40, 51)]) == ["next", "next"]


def test_first_contact_waits_for_the_first_number() -> None:
    link = LinkIn(0, 0)
    assert link.place(_msg(3, 1, 2)) == "gap"
    assert _places(link, [(3, 1, 1), (3, 1, 2)]) == ["next", "next"]


def test_mail_from_a_hive_older_than_epochs_is_epoch_0() -> None:
    old = decode(packb({"id": 1, "seq": 1, "from": "a", "to": "b", "kind": "msg", "body": ""}))
    assert (old["epoch"], old["first"]) == (0, 1)
    link = LinkIn(0, 0)
    assert link.place(old) == "next"
    # After the sender's upgrade its first epoch begins after everything it sent before.
    assert _places(link, [(4, 2, 2), (0, 1, 1)]) == ["next", "duplicate"]


@pytest.mark.parametrize("bad", [-1, 2**63, "1", 1.5, None, True])
@pytest.mark.parametrize("key", ["id", "seq", "epoch", "first"])
def test_a_malformed_number_is_refused(key: str, bad: object) -> None:
    """2**63 fits msgpack but not SQLite: taken, it would fail the whole batch it came
    in, again at every redelivery, and hold up every other hive's mail with it."""
    payload: dict[str, object] = {"id": 1, "seq": 1, "from": "a", "to": "b", "kind": "msg"}
    payload |= {"body": "", key: bad}
    with pytest.raises(ValueError, match=key):
        decode(packb(payload))


# --- the sending end -------------------------------------------------------------------


def _store(path: Path) -> Queries:
    conn = connect(path)
    migrate(conn)
    return Queries(conn)


def _queue(q: Queries, first_id: int, count: int) -> list[OutboxRow]:
    with q.conn:
        return queue_outbound(
            q, [Envelope(first_id + i, "s1", "bob@beta", f"m{i}") for i in range(count)]
        )


def test_each_start_begins_a_later_epoch_even_if_the_clock_went_back(tmp_path: Path) -> None:
    q = _store(tmp_path / "hive.db")
    with q.conn:
        first = begin_epoch(q)
        q.conn.execute("UPDATE fed_epoch SET epoch = ?", (first + 10**15,))  # a clock ahead
        second = begin_epoch(q)
    assert second == first + 10**15 + 1


def test_a_new_epoch_starts_after_the_last_number_and_names_it(tmp_path: Path) -> None:
    q = _store(tmp_path / "hive.db")
    with q.conn:
        e1 = begin_epoch(q)
    rows = _queue(q, 1, 3) + _queue(q, 4, 2)
    assert [(r.seq, r.epoch) for r in rows] == [(1, e1), (2, e1), (3, e1), (4, e1), (5, e1)]
    assert {(m["epoch"], m["first"]) for m in map(decode, (r.payload for r in rows))} == {(e1, 1)}
    with q.conn:
        e2 = begin_epoch(q)
    [row] = _queue(q, 6, 1)
    assert (row.seq, row.epoch, decode(row.payload)["first"]) == (6, e2, 6)
    assert row.msg_id("alpha") == f"alpha:{e2}.6" != rows[0].msg_id("alpha")
    assert OutboxRow(9, "beta", 9, b"", 0).msg_id("alpha") == "alpha:9"  # queued before v6


# --- the whole story -----------------------------------------------------------------


def _copy_db(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in dst.glob("hive.db*"):
        f.unlink()
    for f in src.glob("hive.db*"):
        shutil.copy2(f, dst / f.name)


def test_a_sending_hive_restored_from_an_older_backup_loses_nothing(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive], tmp_path: Path
) -> None:
    """alpha sends 5, is backed up, sends 5 more, and is put back to the backup: the ids
    and link numbers it gives out next are ones beta has stored. Before epochs, beta (and
    JetStream's duplicate window) dropped those 5 new messages as repeats."""
    server = nats()
    alpha = make_hive(hive_config("alpha", server.url, ["s1"]), name="alpha")
    beta = make_hive(hive_config("beta", server.url, ["bob"]), name="beta")

    def bodies() -> list[str]:
        return [r[3] for r in received(beta, "alpha")]

    send_all(alpha, "s1", "bob@beta", 5, tag="before-backup")
    beta.wait_until(lambda: len(bodies()) == 5, 30, "the first 5")
    assert alpha.terminate() == 0
    _copy_db(alpha.state_dir, tmp_path / "backup")
    alpha.restart()
    lost_ids = send_all(alpha, "s1", "bob@beta", 5, tag="after-backup")
    beta.wait_until(lambda: len(bodies()) == 10, 30, "the next 5")
    assert alpha.terminate() == 0
    _copy_db(tmp_path / "backup", alpha.state_dir)
    alpha.restart()
    reused = send_all(alpha, "s1", "bob@beta", 5, tag="restored")
    assert reused == lost_ids  # the copy gives out the same ids again
    beta.wait_until(lambda: len(bodies()) >= 15, 60, "the restored hive's mail")
    want = [f"{tag}:{i}" for tag in ("before-backup", "after-backup", "restored") for i in range(5)]
    assert bodies() == want
    # And the link goes on: the next start of the restored hive is one more epoch.
    alpha.restart()
    send_all(alpha, "s1", "bob@beta", 2, tag="later")
    beta.wait_until(lambda: len(bodies()) >= 17, 30, "mail after one more start")
    assert bodies() == [*want, "later:0", "later:1"]


def test_the_v6_step_keeps_stored_mail_unique_per_epoch(tmp_path: Path) -> None:
    """Mail stored before v6 is epoch 0; the same origin id from a later epoch is new mail,
    and the same (origin, epoch, id) twice is still refused by the store itself."""
    q = _store(tmp_path / "hive.db")
    insert = (
        "INSERT INTO messages (id, sender, recipient, kind, body, ts, origin, origin_id, "
        "origin_epoch) VALUES (?, 's@alpha', 'bob', 'msg', '', 0, 'alpha', 5, ?)"
    )
    with q.conn:
        q.conn.execute(insert, (1, 0))
        q.conn.execute(insert, (2, 77))
    with pytest.raises(apsw.ConstraintError), q.conn:
        q.conn.execute(insert, (3, 77))
