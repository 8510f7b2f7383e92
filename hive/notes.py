"""Notes compaction: keep an agent's durable notes (``state/notes.md``) short.

An agent keeps what must survive a context reset in its notes, and notes only grow. Once
they pass ``HiveConfig.notes_compact_bytes``, a short secondary session of the agent's
runtime rewrites them: no tools, no hive, no saved session, the agent's own credentials and
sandbox. Only a runtime that can answer one question (``Runtime.oneshot()``, claude) has its
notes compacted. The agent's actor decides when (after a clean turn, from the size
``NotesCompactor.measure`` tells it, never while a rewrite it started is still running); the
IO side carries it out (``NotesCompactor.compact``), never inside a turn:

1. read the notes and remember exactly what was read;
2. ask the model for a shorter version (``OneShot.build_oneshot``, ``oneshot_answer``);
3. accept only a non-empty answer shorter than the notes;
4. keep the old notes in ``state/notes-backups/`` (the latest ``KEEP_BACKUPS``);
5. replace ``notes.md`` atomically, unless it changed meanwhile (the agent's next turn may
   have written it): then nothing is replaced, and the end of a later turn tries again.

Each outcome is reported as an agent event: ``notes_compacted`` or ``notes_compaction_failed``.

>>> extract_notes("```markdown\\n# Notes\\n```")
'# Notes\\n'
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from hive import safefs
from hive.io.bridge import IoBridge
from hive.io.spawn import Finished, run_captured
from hive.io.streams import agent_log, signal_group
from hive.process import AgentPaths
from hive.runtimes import get_runtime
from hive.runtimes.base import OneShot, OneShotError, TurnInput
from hive.sandboxes import get_sandbox

log = logging.getLogger(__name__)

NOTES_FILE = "notes.md"
BACKUP_DIR = "notes-backups"
KEEP_BACKUPS = 5
COMPACTION_TIMEOUT_SECONDS = 300.0
# The most the supervisor reads of an agent's notes (it writes them, so they may be any
# size): far past what a model could rewrite in one answer.
MAX_NOTES_BYTES = 1 << 20

SYSTEM_PROMPT = """\
You compact the working notes of a long-lived AI agent. The agent reads these notes after its \
conversation is reset, so they must keep everything it needs to carry on: its current tasks \
and their state, decisions and their reasons, names, paths, ids, commands, open questions \
and promises made to others. Drop what is finished and no longer matters, repetition, and \
narration. Keep the author's structure where it helps. Answer with the new notes only, as \
Markdown, with nothing before or after them."""

_FENCE_RE = re.compile(r"^```[a-zA-Z]*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


class CompactionError(RuntimeError):
    """The rewrite was not usable; the notes were left as they were."""


def notes_path(paths: AgentPaths) -> Path:
    return paths.state / NOTES_FILE


def _relative(paths: AgentPaths) -> Path:
    return notes_path(paths).relative_to(paths.root)


def notes_size(paths: AgentPaths) -> int:
    """How many bytes the agent's notes hold (0: none, or they cannot be read)."""
    try:
        return safefs.size_of(paths.root, _relative(paths))
    except OSError:
        return 0


def needs_compaction(paths: AgentPaths, limit: int) -> bool:
    """Whether the agent's notes are past ``limit`` bytes (``limit`` 0: never)."""
    return past_limit(notes_size(paths), limit)


def past_limit(size: int, limit: int) -> bool:
    """The rule the Agent applies to the size it is told (``limit`` 0: never)."""
    return limit > 0 and size > limit


def read_notes(paths: AgentPaths) -> str:
    """The notes, refused (``FileTooLarge``, checked before reading) past MAX_NOTES_BYTES."""
    return safefs.read_text(paths.root, _relative(paths), MAX_NOTES_BYTES)


def compaction_prompt(notes: str, limit: int) -> str:
    return (
        f"These notes are {len(notes.encode())} bytes; rewrite them in well under "
        f"{limit // 2} bytes.\n\n<notes>\n{notes}\n</notes>"
    )


class Reporter(Protocol):
    """Where the outcome goes: the turn runner's agent events (typed here, so that this
    module does not import the turn runner)."""

    def report(self, name: str, kind: str, data: dict[str, Any]) -> None: ...


def read_answer(oneshot: OneShot, stdout: bytes) -> str:
    """The model's answer in the one-shot's stdout, as a CompactionError when there is none."""
    try:
        return oneshot.oneshot_answer(stdout)
    except OneShotError as exc:
        raise CompactionError(str(exc)) from None


def extract_notes(answer: str) -> str:
    """The rewritten notes in the model's answer (a code fence around them is removed)."""
    text = answer.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group("body").strip()
    if not text:
        raise CompactionError("the model answered with empty notes")
    return text + "\n"


def backup(paths: AgentPaths, text: str) -> Path:
    """Keep ``text`` as the newest backup; drop all but the latest ``KEEP_BACKUPS``.

    The folder is the agent's: it is listed, written and pruned through one descriptor
    opened without following links, so nothing outside it is touched."""
    relative = Path("state") / BACKUP_DIR
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    with safefs.directory(paths.root, relative, create=True) as folder:
        present = set(os.listdir(folder))
        name, n = f"notes-{stamp}.md", 1
        while name in present:
            n += 1
            name = f"notes-{stamp}-{n}.md"
        safefs.write_text_atomic(paths.root, relative / name, text)
        kept = [e for e in os.listdir(folder) if e.startswith("notes-") and e.endswith(".md")]
        by_age = sorted(kept, key=lambda e: os.lstat(e, dir_fd=folder).st_mtime)
        for old in by_age[:-KEEP_BACKUPS]:
            try:
                os.unlink(old, dir_fd=folder)
            except OSError:
                pass  # something the agent put there under a backup's name: not ours
    return paths.root / relative / name


def install(paths: AgentPaths, read: str, rewritten: str) -> Path | None:
    """Replace the notes with ``rewritten`` if they still say ``read``; return the backup.

    ``None``: they changed since they were read, and are left alone."""
    relative = _relative(paths)
    if read_notes(paths) != read:
        return None
    saved = backup(paths, read)
    safefs.write_text_atomic(paths.root, relative, rewritten)
    return saved


async def compact_notes(
    turn: TurnInput, limit: int, timeout: float = COMPACTION_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Rewrite ``turn``'s agent's notes once. Returns what happened, for the event."""
    oneshot = get_runtime(turn.agent.runtime).oneshot()
    if oneshot is None:
        raise CompactionError(f"the {turn.agent.runtime} runtime cannot rewrite notes")
    paths = turn.paths
    # Off the trio thread, and capped before a byte is read: the notes are the agent's.
    read = await trio.to_thread.run_sync(read_notes, paths)
    started = time.monotonic()
    done = await _ask_model(oneshot, turn, compaction_prompt(read, limit), timeout)
    rewritten = extract_notes(read_answer(oneshot, done.stdout))
    if done.returncode != 0:
        raise CompactionError(f"{turn.agent.runtime} exited with {done.returncode}")
    before, after = len(read.encode()), len(rewritten.encode())
    if after >= before:
        raise CompactionError(f"the rewrite is not shorter ({after} >= {before} bytes)")
    saved = await trio.to_thread.run_sync(install, paths, read, rewritten)
    if saved is None:
        raise CompactionError("the notes changed while they were rewritten; next time")
    return {
        "bytes_before": before,
        "bytes_after": after,
        "backup": str(saved),
        "seconds": round(time.monotonic() - started, 3),
    }


async def _ask_model(oneshot: OneShot, turn: TurnInput, prompt: str, timeout: float) -> Finished:
    """Run the one-shot question in the agent's sandbox, within ``timeout``."""
    paths = turn.paths
    spec = await trio.to_thread.run_sync(
        oneshot.build_oneshot, turn, SYSTEM_PROMPT, prompt, turn.hive.notes_compact_model
    )
    spec = get_sandbox(turn.agent.sandbox).wrap(spec, turn.agent, paths)

    def kill_group(process: trio.Process) -> None:
        signal_group(process, signal.SIGKILL)

    with trio.move_on_after(timeout) as scope:
        # From the spawner thread, like a turn: a bwrap sandbox dies with the thread that
        # forked it, and trio's worker threads end after 10 s idle.
        done = await run_captured(
            spec.argv,
            stdin=spec.stdin,
            env=spec.env,
            cwd=str(spec.cwd) if spec.cwd else None,
            on_cancel=kill_group,
        )
    if scope.cancelled_caught:
        raise CompactionError(f"the rewrite took longer than {timeout:g} s")
    for line in done.stderr.decode(errors="replace").splitlines()[-20:]:
        agent_log(paths.log, f"notes compaction: {line}")
    return done


class NotesCompactor:
    """Carries out what an agent decided about its notes (``AgentActor._notes_*``): it
    measures them and rewrites them when told to, and reports back; it decides nothing
    (not when, not whether one is already running: the Agent keeps that as its state).

    Called from actor threads; the work runs as tasks on the trio thread."""

    def __init__(self, bridge: IoBridge, reporter: Reporter) -> None:
        self.bridge = bridge
        self.reporter = reporter

    def measure(self, paths: AgentPaths, on_size: Callable[[int], None]) -> None:
        """Tell ``on_size`` how many bytes the agent's notes hold (0: none, unreadable)."""
        self.bridge.spawn(self._measure, paths, on_size)

    def compact(self, turn: TurnInput, limit: int, on_done: Callable[[bool], None]) -> None:
        """Rewrite ``turn``'s agent's notes once; ``on_done(compacted)`` after it ended,
        whatever the outcome (the outcome itself is reported as an agent event)."""
        self.bridge.spawn(self._compact, turn, limit, on_done)

    async def _measure(self, paths: AgentPaths, on_size: Callable[[int], None]) -> None:
        on_size(await trio.to_thread.run_sync(notes_size, paths))

    async def _compact(self, turn: TurnInput, limit: int, on_done: Callable[[bool], None]) -> None:
        compacted = False
        try:
            compacted = await self._rewrite(turn, limit)
        except Exception:
            log.exception("notes compaction for %s failed", turn.agent.name)
        finally:
            on_done(compacted)

    async def _rewrite(self, turn: TurnInput, limit: int) -> bool:
        name = turn.agent.name
        try:
            result = await compact_notes(turn, limit)
        except (CompactionError, OSError) as exc:
            agent_log(turn.paths.log, f"notes compaction failed: {exc}")
            self.reporter.report(name, "notes_compaction_failed", {"reason": str(exc)})
            return False
        agent_log(
            turn.paths.log,
            f"notes compacted from {result['bytes_before']} to {result['bytes_after']} bytes "
            f"(backup: {result['backup']})",
        )
        self.reporter.report(name, "notes_compacted", result)
        return True


def backups(paths: AgentPaths) -> Sequence[Path]:
    """The kept backups, oldest first."""
    folder = paths.state / BACKUP_DIR
    return sorted(folder.glob("notes-*.md"), key=lambda p: p.stat().st_mtime)


__all__ = [
    "CompactionError",
    "NotesCompactor",
    "backups",
    "compact_notes",
    "extract_notes",
    "install",
    "needs_compaction",
    "notes_path",
    "notes_size",
    "past_limit",
    "read_answer",
]
