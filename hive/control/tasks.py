"""IO the Approvals actor hands to the trio thread: creating draft repos, preparing a new
agent's directories. Each task reports back to the actor with a message and never raises
into the daemon's nursery (that would stop the daemon).

A draft's config repo lives in the directory of the manager that asked for it,
``<state>/agents/<manager>/drafts/<name>``: that is the one place a sandboxed manager can
reach (its own directory is all its sandbox shows it), and no other agent can. The repo is
given to the manager's uid. When the spawn is approved, the repo is moved (one rename, by
directory descriptors) to the new agent's ``config``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from hive import safefs
from hive.config import AgentConfig
from hive.control import gitrepo
from hive.control.spawn import agent_toml
from hive.process import AgentPaths
from hive.sandboxes.uids import give_subtree
from hive.wire import WireError

if TYPE_CHECKING:
    from hive.actors.base import HiveContext

log = logging.getLogger(__name__)

# (sha, error): sha of the config commit ('' if none), error message or None
Report = Callable[[str, str | None], None]


def paths_of(ctx: HiveContext, name: str) -> AgentPaths:
    return AgentPaths.for_agent(name, ctx.config.state_dir, ctx.config.sockets_dir)


DRAFTS_DIR = "drafts"


def draft_dir(ctx: HiveContext, name: str, manager: str) -> Path:
    """Where the draft ``name`` asked for by ``manager`` keeps its config repo."""
    return paths_of(ctx, manager).root / DRAFTS_DIR / name


async def make_draft(
    ctx: HiveContext, name: str, manager: str, toml_text: str, report: Report
) -> None:
    """A draft: a config repo with agent.toml committed in the manager's own directory,
    owned by the manager's uid.

    The repo is made in a fresh directory of root's own (``agents/.draft-*``, which no
    agent name can spell and no sandbox shows), and only then moved into the manager's
    drafts dir: git never runs as root on a path the manager could swap while the repo is
    being made, and nothing of an agent's directory is handed over. A destroyed agent's
    kept directory of the same name is left alone: its repo is the operator's to reuse
    (a spawn of the kept name) or purge, never the manager's."""
    paths = paths_of(ctx, name)
    manager_root = paths_of(ctx, manager).root
    try:
        await trio.to_thread.run_sync(paths.ensure)  # the new agent's dirs, as before a spawn
        scratch = await trio.to_thread.run_sync(_scratch_dir, manager_root.parent)
        try:
            repo = scratch / "config"
            sha = await gitrepo.commit_config(repo, toml_text, f"draft of agent {name}")
            await trio.to_thread.run_sync(_hand_draft_over, scratch, manager_root, name)
        finally:
            await trio.to_thread.run_sync(partial(shutil.rmtree, scratch, ignore_errors=True))
    except WireError as exc:
        report("", exc.message)
    except Exception as exc:
        log.exception("draft %s could not be created", name)
        report("", f"could not create the draft's directories: {exc}")
    else:
        report(sha, None)


def _scratch_dir(agents_dir: Path) -> Path:
    """A new directory only root can enter, beside the agents' (so a rename moves it)."""
    agents_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".draft-", dir=agents_dir))


def _hand_draft_over(scratch: Path, manager_root: Path, name: str) -> None:
    """Move the fresh config repo ``scratch/config`` to the manager's ``drafts/<name>`` and
    give it to the manager's uid (its directory's owner). Whatever the manager left under
    that name (an old repo, a link) is moved aside in its own drafts dir, never followed or
    deleted. Both ends are opened by descriptor without following links."""
    with (
        safefs.directory(scratch) as source,
        safefs.directory(manager_root, DRAFTS_DIR, create=True) as drafts,
    ):
        try:
            os.lstat(name, dir_fd=drafts)
        except FileNotFoundError:
            pass
        else:
            aside = f".{name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.rename(name, aside, src_dir_fd=drafts, dst_dir_fd=drafts)
        os.rename("config", name, src_dir_fd=source, dst_dir_fd=drafts)
    owner = os.lstat(manager_root)
    give_subtree(manager_root, Path(DRAFTS_DIR), owner.st_uid, owner.st_gid)


def remove_draft_repo(manager_root: Path, name: str) -> None:
    """Delete a discarded draft's repo from the manager's drafts dir (by descriptor; a link
    there is removed itself)."""
    safefs.remove_tree(manager_root, Path(DRAFTS_DIR) / name)


def adopt_draft(manager_root: Path, name: str, agent_root: Path) -> bool:
    """Move the manager's draft repo ``name`` to ``agent_root/config``; False when there is
    no draft directory to move (the manager removed it).

    Both ends are opened by descriptor without following links; if the manager swapped the
    draft for a link just before the rename, the link is what moves, and it is removed
    again at once. A config dir already there (the empty one ensure() made, or a kept repo
    of an earlier agent of that name) is removed if empty, else moved aside."""
    with (
        safefs.directory(manager_root, DRAFTS_DIR) as drafts,
        safefs.directory(agent_root) as target,
    ):
        try:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=drafts).st_mode):
                return False
        except FileNotFoundError:
            return False
        try:
            os.rmdir("config", dir_fd=target)
        except FileNotFoundError:
            pass
        except OSError:
            aside = f"config.before-{time.strftime('%Y%m%dT%H%M%S')}"
            os.rename("config", aside, src_dir_fd=target, dst_dir_fd=target)
        os.rename(name, "config", src_dir_fd=drafts, dst_dir_fd=target)
        if not stat.S_ISDIR(os.lstat("config", dir_fd=target).st_mode):
            os.unlink("config", dir_fd=target)
            os.mkdir("config", 0o755, dir_fd=target)
            return False
        with safefs.directory(agent_root, "config") as config:
            _break_hard_links(config)
    return True


# A hard-linked file of a draft bigger than this is dropped rather than copied.
MAX_LINKED_COPY_BYTES = 64 << 20


def _break_hard_links(dir_fd: int) -> None:
    """Give every file below ``dir_fd`` that has other hard links a name of its own.

    The tree came from the manager, who may have hard-linked a file there from its own
    directory: after the move, the same inode would sit in the new agent's directory and
    stay writable through the manager's name (and the chown walk leaves multi-link files
    alone). Each such file is replaced by a copy (dropped past MAX_LINKED_COPY_BYTES, or
    if it is not a regular file). By descriptor, never following a link (safefs.walk_tree)."""
    safefs.walk_tree(dir_fd, _own_copy_if_linked)


def _own_copy_if_linked(dir_fd: int, name: str, seen: os.stat_result) -> None:
    if not stat.S_ISLNK(seen.st_mode) and seen.st_nlink > 1:
        _own_copy(dir_fd, name, seen)


def _own_copy(dir_fd: int, name: str, seen: os.stat_result) -> None:
    if not stat.S_ISREG(seen.st_mode) or seen.st_size > MAX_LINKED_COPY_BYTES:
        log.warning("draft file %s has other hard links and was dropped", name)
        os.unlink(name, dir_fd=dir_fd)
        return
    tmp = f".{name}.unlinked-{os.getpid()}"
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if (os.fstat(src).st_ino, os.fstat(src).st_dev) != (seen.st_ino, seen.st_dev):
            os.unlink(name, dir_fd=dir_fd)  # swapped meanwhile: drop whatever it is now
            return
        # The tree is out of the manager's reach now; a name it left here is just removed.
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(tmp, flags, stat.S_IMODE(seen.st_mode) & 0o777, dir_fd=dir_fd)
        with os.fdopen(dst, "wb") as out:
            left = MAX_LINKED_COPY_BYTES
            while left > 0 and (chunk := os.read(src, min(1 << 20, left))):
                out.write(chunk)
                left -= len(chunk)
    finally:
        os.close(src)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


async def prepare_agent(
    ctx: HiveContext,
    cfg: AgentConfig,
    make_repo: bool,
    report: Report,
    draft_of: str | None = None,
) -> None:
    """Directories for a new agent and, for a one-shot spawn, a config repo holding its
    config, so later changes can go through request_apply_commit like any other. A spawn
    from a draft (``draft_of``: the manager whose draft it is) takes over the draft's repo;
    if the manager removed it, a repo with the approved config is made instead."""
    paths = paths_of(ctx, cfg.name)
    try:
        await trio.to_thread.run_sync(paths.ensure)
    except Exception as exc:
        log.exception("directories of %s could not be created", cfg.name)
        report("", f"could not create the agent's directories: {exc}")
        return
    if draft_of is not None:
        manager_root = paths_of(ctx, draft_of).root
        try:
            adopted = await trio.to_thread.run_sync(adopt_draft, manager_root, cfg.name, paths.root)
        except OSError as exc:
            log.warning("draft repo of %s not taken over: %s", cfg.name, exc)
            adopted = False
        make_repo = not adopted
    sha = ""
    if make_repo:
        try:
            sha = await gitrepo.commit_config(
                paths.config, agent_toml(cfg), f"config of agent {cfg.name} at spawn"
            )
        except Exception as exc:  # the agent can run without one: log, go on
            log.warning("config repo of %s not created: %s", cfg.name, exc)
    report(sha, None)
