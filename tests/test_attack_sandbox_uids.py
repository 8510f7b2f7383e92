"""Two agents must never share a host uid: the uid *is* the agent outside its namespaces
(it owns the agent's files and, under nspawn, its socket). A manager chooses the names it
asks to spawn, and 12 bits of sha256 collide after a few dozen tries ("a7" and "a20" here):
two such agents prepared at the same time took the same free slot, because a slot was
claimed only by the chown that came after the allocation lock was released."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive.config import AgentConfig
from hive.process import AgentPaths
from hive.sandboxes import BwrapSandbox
from hive.sandboxes.uids import allocate_uid, preferred_slot

A, B = "a7", "a20"  # the same preferred slot


@pytest.fixture
def hive_root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("uids are given by chown: run as root")
    root = Path(tempfile.mkdtemp(prefix="hive-uids-attack-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def paths(root: Path, name: str) -> AgentPaths:
    return AgentPaths.for_agent(name, root / "state", root / "run")


def test_the_names_collide() -> None:
    assert preferred_slot(A) == preferred_slot(B)


def test_an_allocated_uid_is_taken_before_the_lock_is_let_go(hive_root: Path) -> None:
    a, b = paths(hive_root, A), paths(hive_root, B)
    a.ensure()
    b.ensure()
    first = allocate_uid(a.root)
    second = allocate_uid(b.root)  # before a's chown walk: a's dir must already say first
    assert first != second
    assert a.root.lstat().st_uid == first  # the allocation claimed it
    assert allocate_uid(a.root) == first  # and keeps it


def test_two_colliding_agents_prepared_at_once_get_two_uids(hive_root: Path) -> None:
    sandbox = BwrapSandbox()
    for attempt in range(300):  # bounded: each round is a fresh pair of new agents
        base = hive_root / str(attempt)
        pair = [paths(base, A), paths(base, B)]
        (base / "run" / "agents").mkdir(parents=True)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def prepare(
            p: AgentPaths,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                start.wait(timeout=30)
                sandbox.prepare(AgentConfig(p.name, sandbox="bwrap"), p)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=prepare, args=(p,)) for p in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        uids = [p.root.lstat().st_uid for p in pair]
        assert uids[0] != uids[1], f"round {attempt}: both agents are uid {uids[0]}"
