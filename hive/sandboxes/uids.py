"""Host uids for sandboxed agents: uid 0 inside a sandbox is an unprivileged uid outside.

Every agent owns one block of 65536 host uids starting at ``uid_base + 65536 * slot``.
bwrap maps only the first uid of the block (uid 0 inside); nspawn containers
(``PrivateUsers=<first>:65536``) use the whole block. Keeping both on the same block means
an agent can move between the two backends without re-owning its files.

The preferred slot comes from a hash of the agent's name, so the NixOS module (nix/lib.nix,
``agentSlot``) computes the same uid at evaluation time without asking the host:

>>> preferred_slot("bob")
2075
>>> slot_uid(2075)
1746599936

Where two names hash to the same slot, the bwrap backend takes the next free slot and keeps
it: the allocation *is* the owner of the agent's root directory, so it survives restarts and
needs no table of its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from hive import safefs
from hive.sandboxes.base import SandboxError

# 0x60000000-0x6FFFFFFF: inside systemd's range for container uids, far above any uid a
# distribution hands to people or services, and below 2**31 where some tools still break.
UID_BASE = 0x6000_0000
BLOCK = 0x1_0000  # 65536 uids per agent, the size nspawn's PrivateUsers wants
SLOTS = 0x1000  # 4096 blocks: UID_BASE + SLOTS * BLOCK == 0x70000000

_LOCK_NAME = ".uids.lock"


def preferred_slot(name: str) -> int:
    """The slot an agent gets unless another agent holds it: 12 bits of sha256(name)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:3], 16)


def slot_uid(slot: int, base: int = UID_BASE) -> int:
    return base + slot * BLOCK


def uid_slot(uid: int, base: int = UID_BASE) -> int | None:
    """The slot that ``uid`` is the first uid of, or None when it is not a hive agent uid."""
    offset = uid - base
    if offset < 0 or offset % BLOCK or offset // BLOCK >= SLOTS:
        return None
    return offset // BLOCK


@contextmanager
def _locked(agents_dir: Path) -> Iterator[None]:
    # Agent actors prepare their sandboxes concurrently; one lock keeps two new agents from
    # taking the same free slot.
    agents_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(agents_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def allocate_uid(root: Path, base: int = UID_BASE) -> int:
    """The agent uid for the agent whose directory is ``root`` (``<state>/agents/<name>``).

    Keeps the owner of ``root`` when it already is an agent uid; otherwise takes the name's
    preferred slot, or the next one no sibling agent directory is owned by.
    """
    agents_dir = root.parent
    with _locked(agents_dir):
        try:
            current = root.lstat().st_uid
        except FileNotFoundError:
            current = -1
        if uid_slot(current, base) is not None:
            return current
        taken = set()
        for sibling in agents_dir.iterdir():
            if sibling != root and sibling.is_dir() and not sibling.is_symlink():
                taken.add(sibling.lstat().st_uid)
        start = preferred_slot(root.name)
        for step in range(SLOTS):
            uid = slot_uid((start + step) % SLOTS, base)
            if uid not in taken:
                _claim(root, uid)
                return uid
    raise SandboxError(f"all {SLOTS} agent uid blocks above {base} are taken; remove old agents")


def _claim(root: Path, uid: int) -> None:
    """Make ``uid`` the owner of ``root`` while the allocation lock is held: the owner is
    what marks a slot taken, and an agent prepared at the same moment whose name has the
    same preferred slot would otherwise take it too (the chown walk comes after the lock)."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return  # nothing to claim yet: give_to refuses a missing root anyway
    except OSError as exc:
        raise SandboxError(f"{root} must be a real directory (found a symlink or a file)") from exc
    try:
        os.fchown(fd, uid, uid)
    finally:
        os.close(fd)
    _walked.discard((root, uid))  # a new allocation is a new tree: walk it whole


# Trees already walked by this process: later calls re-own only the parts the supervisor
# writes into, so a turn does not pay a walk over a large work dir every time.
_walked: set[tuple[Path, int]] = set()


def give_to(root: Path, uid: int, gid: int, *, always: Iterable[Path] = ()) -> None:
    """Make ``root`` and everything below it belong to the agent's uid (idempotent).

    The whole tree is walked the first time per process; after that only ``root`` itself
    and the ``always`` subtrees (where the supervisor writes files), because everything else
    below ``root`` is written by the agent, as its own uid.

    The tree is the agent's, and the agent may be running while this walks it, swapping a
    directory for a link to a host directory between two steps. So the walk never uses a
    path: every directory is opened relative to its parent's descriptor with O_NOFOLLOW and
    re-owned with fchown on its own descriptor, every other entry with fchownat relative to
    its directory's descriptor without following it. A swap can only make a step fail
    (the entry is skipped), never lead it outside the tree.
    """
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise SandboxError(f"{root} must be a real directory (found a symlink or a file)") from exc
    try:
        # A root not (yet) the agent's is a new tree, whatever this process walked before
        # under that name (a purged agent spawned again): it gets the whole walk.
        if (root, uid) in _walked and os.fstat(root_fd).st_uid == uid:
            _own_fd(root_fd, uid, gid)
            for subtree in always:
                if subtree.parent == root:
                    _own_subtree(root_fd, subtree.name, uid, gid)
        else:
            _own_tree(root_fd, uid, gid)
            _walked.add((root, uid))
        # 0700: another agent's uid cannot even list it, should it ever see the path.
        os.fchmod(root_fd, 0o700)
    finally:
        os.close(root_fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def give_subtree(root: Path, relative: Path, uid: int, gid: int) -> None:
    """Re-own root/relative and everything below it, walked by descriptor (see give_to)."""
    with safefs.directory(root, relative) as fd:
        _own_tree(fd, uid, gid)


def _own_subtree(parent_fd: int, name: str, uid: int, gid: int) -> None:
    """Re-own the directory ``name`` of ``parent_fd`` and everything below it, if it is
    one (gone, a link or not a directory: nothing of ours to re-own)."""
    visit = partial(_own_entry, uid=uid, gid=gid)
    safefs.walk_subtree(parent_fd, name, visit, partial(_own_fd, uid=uid, gid=gid))


def _own_tree(dir_fd: int, uid: int, gid: int) -> None:
    """Re-own the directory ``dir_fd`` and everything below it (down to
    safefs.MAX_WALK_DEPTH), by descriptor only."""
    visit = partial(_own_entry, uid=uid, gid=gid)
    safefs.walk_tree(dir_fd, visit, partial(_own_fd, uid=uid, gid=gid))


def _own_fd(fd: int, uid: int, gid: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != uid or st.st_gid != gid:
        os.fchown(fd, uid, gid)


def _own_entry(dir_fd: int, name: str, seen: os.stat_result, uid: int, gid: int) -> None:
    """Re-own a file, link or other non-directory entry of ``dir_fd`` (never its target).

    A file with other hard links is left alone: the agent cannot make a hard link to a file
    it does not own (fs.protected_hardlinks), but if one exists, re-owning it would re-own
    the host's name for it too."""
    if (seen.st_uid, seen.st_gid) == (uid, gid):
        return
    if not stat.S_ISLNK(seen.st_mode) and seen.st_nlink > 1:
        return
    try:
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass


def allow_traverse(directory: Path) -> None:
    """Let any uid pass through ``directory`` (x for others) without listing it.

    bwrap runs as the agent's uid and must resolve the paths it binds (the agent's dir and
    socket) before it masks their parents, so every parent must be traversable by that uid.
    """
    mode = directory.stat().st_mode
    if not mode & stat.S_IXOTH:
        os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
