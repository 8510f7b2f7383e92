"""What each agent's processes use of the host's memory, measured in /proc (never guessed).

An agent's process tree is every process in the process group of its turn or session
process (hive.io.group starts each in a group of its own) plus every descendant of that
process (a tool that starts its own group is still a child of the CLI). Its size is the
sum of their resident sets (``/proc/PID/stat`` field 24, in pages). Shared pages (the
claude binary's text) are counted in every tree that maps them, so the sum is an upper
bound of what the trees cost together: a budget checked against it is never exceeded.

One pass reads ``/proc/*/stat`` once, whatever the number of agents; it runs in a worker
thread (hive.io.turns.TurnRunner.sample_memory), a few milliseconds for a few hundred
processes.

>>> import os
>>> rss = tree_rss({"me": [os.getpid()]})
>>> rss["me"] > 0
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcEntry:
    """One process, as /proc/PID/stat tells it."""

    pid: int
    ppid: int
    pgid: int
    rss_bytes: int


def read_stat(pid: int, proc: str = "/proc") -> ProcEntry | None:
    """One process's parent, group and resident size; None if it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or ')': split after the last.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcEntry(pid, int(fields[1]), int(fields[2]), int(fields[21]) * PAGE_BYTES)
    except (IndexError, ValueError):
        return None


def all_processes(proc: str = "/proc") -> list[ProcEntry]:
    entries = []
    for name in os.listdir(proc):
        if name.isdigit():
            entry = read_stat(int(name), proc)
            if entry is not None:
                entries.append(entry)
    return entries


def tree_rss(leaders: Mapping[str, Iterable[int]], proc: str = "/proc") -> dict[str, int]:
    """Bytes resident in each agent's process trees (its leaders' groups and descendants).
    An agent whose processes have all exited is left out."""
    entries = all_processes(proc)
    by_pid = {e.pid: e for e in entries}
    children: dict[int, list[int]] = {}
    groups: dict[int, list[int]] = {}
    for e in entries:
        children.setdefault(e.ppid, []).append(e.pid)
        groups.setdefault(e.pgid, []).append(e.pid)
    sizes: dict[str, int] = {}
    for agent, pids in leaders.items():
        members: set[int] = set()
        for leader in pids:
            members.update(groups.get(leader, ()))
            members.update(_descendants(leader, children))
        total = sum(by_pid[p].rss_bytes for p in members if p in by_pid)
        if total:
            sizes[agent] = total
    return sizes


def _descendants(pid: int, children: Mapping[int, list[int]]) -> set[int]:
    found = {pid}
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
