"""The Store actor: the only writer of the database, with group commit.

Every durable change is a ``Write``: a function over the writing connection plus a
callback for its result. Writes that queue up while one transaction runs are committed
together in the next, so many concurrent senders share one fsync; nothing is reported
done before its transaction has committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from hive import logthrottle
from hive.actors.base import (
    HiveContext,
    InjectFault,
    SupervisedActor,
    tell_quietly,
)
from hive.store import Queries, connect
from hive.store.retention import Pruned, prune

log = logging.getLogger(__name__)

# On a full disk every commit fails for as long as senders keep trying (each is told
# store_failed): the first failure is logged with its traceback, then one line a minute
# (hive.logthrottle), not a traceback per commit. Matched on the message _flush logs.
COMMIT_FAILED_LOG = "store: commit of %d writes failed"
COMMIT_FAILED_LOG_EVERY = 60.0
logthrottle.throttle(__name__, COMMIT_FAILED_LOG_EVERY, {COMMIT_FAILED_LOG}, first_traceback=True)


@dataclass(frozen=True)
class Write:
    """Run ``op`` in the next group transaction, then call ``done(result, error)``."""

    op: Callable[[Queries], Any]
    done: Callable[[Any, BaseException | None], None] | None = None


@dataclass(frozen=True)
class Read:
    """Run ``op`` on the writer's connection and return its value (use with ``ask``), after
    committing the Writes queued before it."""

    op: Callable[[Queries], Any]


@dataclass(frozen=True)
class _Flush:
    pass


@dataclass(frozen=True)
class _Prune:
    pass


# After a pass that found more than a batch, the next comes this soon: other writes get
# the writer in between, and a large backlog still drains in minutes.
PRUNE_AGAIN_SECONDS = 0.05


class StoreActor(SupervisedActor):
    """The one writer of the database: batches writes into transactions and runs retention."""

    child_id = "store"

    def __init__(self, ctx: HiveContext) -> None:
        super().__init__(ctx)
        self._pending: list[Write] = []
        self._flush_queued = False
        self._conn: apsw.Connection | None = None
        self.batches = 0
        self.writes = 0
        self.changing = 0  # transactions that changed rows: those that cost an fsync

    def on_start(self) -> None:
        self._conn = connect(
            self.ctx.config.db_path, synchronous=self.ctx.config.sqlite_synchronous.upper()
        )
        self._q = Queries(self._conn)
        self._prune_later(self.ctx.config.prune_interval)

    def on_stop(self) -> None:
        self._flush()
        if self._conn is not None:
            self._conn.close()
        # bench_recv_latency reads this line: fsyncs per message.
        log.info(
            "store: %d transactions (%d changed rows), %d writes",
            self.batches, self.changing, self.writes,
        )  # fmt: skip

    def unfinished(self) -> list[object]:
        # Writes queued for the next transaction never ran: the next Store runs them.
        pending, self._pending = self._pending, []
        return list(pending)

    def receive(self, message: Any) -> Any:
        match message:
            case Write():
                self._pending.append(message)
                if not self._flush_queued:
                    # Queued behind every message already waiting, so the flush
                    # picks up all writes that arrived meanwhile: the group commit.
                    self._flush_queued = True
                    self.actor_ref.tell(_Flush())
            case InjectFault():
                self.injected(message)
            case _Flush():
                self._flush_queued = False
                self._flush()
            case Read(op=op):
                # A Read sees every Write told before it: without this flush, a restarted
                # actor's first Read could run before a write its dead predecessor had
                # queued (an answer it had just committed) and load that question as
                # still pending.
                self._flush()
                return op(self._q)
            case _Prune():
                self._prune()
            case _:
                log.warning("store: unexpected message %r", message)
        return None

    # --- retention: one small batch per table, queued like any other write -------------

    def _prune_later(self, delay: float) -> None:
        me = self.actor_ref  # a dead Store's timer tells nobody: one chain per Store
        self.ctx.io.call_later(delay, lambda: tell_quietly(me, _Prune()))

    def _prune(self) -> None:
        cfg = self.ctx.config

        def done(result: Pruned | None, error: BaseException | None) -> None:
            if result is not None:
                if self.ctx.operator_mailbox is not None:
                    self.ctx.operator_mailbox.removed(result.operator_mail)
                if result.rows:
                    log.info("store: retention pruned %s", dict(result.rows))
            more = result is not None and result.more
            self._prune_later(PRUNE_AGAIN_SECONDS if more else cfg.prune_interval)

        self.receive(Write(lambda q: prune(q, cfg, time.time()), done))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch or self._conn is None:
            return
        results: list[tuple[Any, BaseException | None]] = []
        conn = self._conn
        changes = conn.total_changes()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for w in batch:
                try:
                    with conn:  # a savepoint: one failing write does not sink the batch
                        results.append((w.op(self._q), None))
                except Exception as exc:
                    log.exception("store: write failed")
                    results.append((None, exc))
            conn.execute("COMMIT")
            self.ctx.commits.committed += 1
            self.changing += conn.total_changes() != changes
        except Exception as exc:
            log.exception("store: commit of %d writes failed", len(batch))
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            results = [(None, exc)] * len(batch)
        self.batches += 1
        self.writes += len(batch)
        for w, (value, err) in zip(batch, results, strict=True):
            if w.done is not None:
                try:
                    w.done(value, err)
                except Exception:
                    log.exception("store: completion callback failed")
