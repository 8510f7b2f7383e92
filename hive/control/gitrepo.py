"""Agent config repos: git, run on the trio thread with ``trio.run_process``.

An agent's config dir (``<state>/agents/<name>/config``) is a git repo whose ``agent.toml``
is the agent's config. The manager edits and commits there; hive only reads commits by
their full sha.

The repo belongs to whoever can write it, and git obeys a repo's own ``.git/config`` (a
promisor remote's ``uploadpack`` command, ``core.fsmonitor``, hooks, filters, ...). So
root never runs git in a repo an agent can write: every git command here runs as the uid
that owns the repo (``setpriv`` drops to it before git starts), with an environment built
from nothing (no system or global config, no HOME, no replace refs) and ``-c`` settings
that turn off every hook, transport and helper we know of. What a planted command could
still do, it does as the agent's own uid, which owns those files already. Only a repo that
nothing but root has ever owned (a fresh draft, an agent in the unsandboxed ``process``
backend, which runs as root anyway) is read by root.

hive also never writes into the repo as root: the config it commits goes in through git's
stdin (``hash-object --stdin``, ``mktree``, ``commit-tree``), and the working copy of
agent.toml is written by ``sh -c 'cat > agent.toml'`` as the owner (a checkout would run
the repo's smudge filters).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import partial
from pathlib import Path

import trio

from hive import safefs
from hive.wire import WireError

CONFIG_FILE = "agent.toml"
# The agent.toml hive reads from a commit: the repo is the manager's, so its size is checked
# (``cat-file -s``) before the blob is read into the supervisor's memory.
MAX_CONFIG_BYTES = 256 * 1024
GIT_TIMEOUT = 30.0
# A ref as an agent may name it: branch, tag, sha, HEAD~2 ... never an option.
_REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/~^@{}-]{0,199}$")

_ENV = {
    "GIT_AUTHOR_NAME": "hive",
    "GIT_AUTHOR_EMAIL": "hive@localhost",
    "GIT_COMMITTER_NAME": "hive",
    "GIT_COMMITTER_EMAIL": "hive@localhost",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",  # a sha names exactly the object hive read
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "HOME": "/nonexistent",
    "XDG_CONFIG_HOME": "/nonexistent",
    "LC_ALL": "C",
}
_SAFE = (
    "-c", "safe.directory=*",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "core.sshCommand=false",
    "-c", "core.askPass=false",
    "-c", "core.pager=cat",
    "-c", "credential.helper=",
    "-c", "diff.external=",
    "-c", "protocol.allow=never",  # no transport: a promisor remote cannot lazy-fetch
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
)  # fmt: skip


def owner_of(repo: Path) -> tuple[int, int] | None:
    """The (uid, gid) git must run as in ``repo``; None: as this process.

    A supervisor that is not root runs git as itself (it can give nothing away). As root:
    the owner of the agent's directory, its config dir, ``.git`` and ``.git/config``
    (whichever is not root's; never followed through a link). Two different non-root owners
    is a repo hive will not touch.
    """
    if os.geteuid() != 0:
        return None
    owners: set[tuple[int, int]] = set()
    for path in (repo.parent, repo, repo / ".git", repo / ".git" / "config"):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise WireError("git_failed", f"cannot inspect {path}: {exc.strerror}") from exc
        if st.st_uid != 0:
            owners.add((st.st_uid, st.st_gid if st.st_gid != 0 else st.st_uid))
    if len({uid for uid, _ in owners}) > 1:
        raise WireError(
            "git_failed", f"{repo} has files of several owners; hive will not run git in it"
        )
    return owners.pop() if owners else None


def as_owner(argv: list[str], owner: tuple[int, int] | None) -> list[str]:
    """``argv``, run as ``owner`` (None: as this process)."""
    if owner is None:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise WireError("git_failed", "setpriv (util-linux) is needed to run git as the agent")
    uid, gid = owner
    drop = [setpriv, "--reuid", str(uid), "--regid", str(gid), "--clear-groups"]
    return [*drop, "--no-new-privs", "--", *argv]


def check_ref(ref: str) -> str:
    if not _REF_RE.match(ref) or ".." in ref:
        raise WireError(
            "bad_request",
            f"invalid git ref {ref!r}: use a branch, tag or commit sha (e.g. HEAD or a1b2c3d)",
        )
    return ref


async def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    """Run one git command in ``repo`` as the repo's owner (see the module docstring);
    its stdout, or a WireError with git's own words."""
    git_bin = shutil.which("git") or "git"
    argv = [git_bin, *_SAFE, "-C", str(repo), *args]
    return await _run_as_owner(repo, argv, stdin, what=f"git {args[0]}")


async def _write_as_owner(repo: Path, name: str, text: str) -> None:
    """Write ``repo/name`` as the repo's owner (not through git, whose checkout would run
    the repo's smudge filters), replacing whatever is there, a link included, never
    writing through it."""
    if owner_of(repo) is None:
        # Root's own repo (or a root supervisor's fresh one): a no-follow walk and an
        # atomic replace, so a link planted there is replaced, not followed.
        relative = Path(repo.name) / name
        await trio.to_thread.run_sync(safefs.write_text_atomic, repo.parent, relative, text)
        return
    # As the agent's uid: a link it planted can lead only where that uid may write anyway;
    # the rename replaces the link itself.
    script = 'umask 022; cat > "$1.hive-tmp" && mv -f "$1.hive-tmp" "$1"'
    argv = ["/bin/sh", "-c", script, "sh", str(repo / name)]
    await _run_as_owner(repo, argv, text, what=f"writing {name}")


def _owner_command(repo: Path, command: list[str]) -> tuple[list[str], dict[str, str]]:
    """``command`` as the repo's owner runs it, and the clean environment it gets."""
    env = {**_ENV, "PATH": os.environ.get("PATH", os.defpath)}
    # A repo missing its .git must not make git look for one in the agent's directory.
    env["GIT_CEILING_DIRECTORIES"] = str(repo.parent)
    return as_owner(command, owner_of(repo)), env


async def _run_as_owner(repo: Path, command: list[str], stdin: str | None, what: str) -> str:
    argv, env = _owner_command(repo, command)
    with trio.move_on_after(GIT_TIMEOUT) as scope:
        result = await trio.run_process(
            argv,
            stdin=stdin.encode() if stdin is not None else b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
            cwd="/",
        )
    if scope.cancelled_caught:
        raise WireError("git_failed", f"{what} in {repo} took over {GIT_TIMEOUT:g} s")
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise WireError("git_failed", f"{what} in {repo}: {err[-1] if err else 'failed'}")
    return result.stdout.decode("utf-8", "replace")


async def is_repo(repo: Path) -> bool:
    return await trio.Path(repo / ".git").exists()


async def commit_config(repo: Path, toml_text: str, message: str) -> str:
    """Make ``repo`` a git repo whose HEAD holds ``toml_text`` as agent.toml; return HEAD.

    A new repo gets it as its first commit. An existing one (a draft asked for again after
    a restart, a kept repo of a destroyed agent) gets a commit on top only if agent.toml at
    HEAD differs, so asking twice is harmless. Root writes nothing here itself: git, as the
    repo's owner, takes the content on stdin and checks the working copy out."""
    if not await is_repo(repo):
        # Run from the agent's directory, so the owner creates the repo (and its dir).
        await git(repo.parent, "init", "-q", "-b", "main", "--", repo.name)
    blob = await git(repo, "hash-object", "-w", "--no-filters", "--stdin", stdin=toml_text)
    blob = blob.strip()
    try:
        head = (await git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")).strip()
    except WireError:
        head = ""  # no commit yet
    current = ""
    if head:
        try:
            current = (await git(repo, "rev-parse", f"{head}:{CONFIG_FILE}")).strip()
        except WireError:
            current = ""
    if current != blob:
        # The new tree: HEAD's top level with agent.toml replaced, built without an index,
        # so the manager's own staging is left alone.
        listing = await git(repo, "ls-tree", "-z", head) if head else ""
        entries = [e for e in listing.split("\0") if e and e.split("\t", 1)[1] != CONFIG_FILE]
        entries.append(f"100644 blob {blob}\t{CONFIG_FILE}")
        tree = (await git(repo, "mktree", "-z", stdin="\0".join(entries) + "\0")).strip()
        parents = ["-p", head] if head else []
        commit = (await git(repo, "commit-tree", tree, *parents, "-m", message)).strip()
        await git(repo, "update-ref", "-m", message, "HEAD", commit, *([head] if head else []))
        head = commit
    # The checked-out agent.toml is this content, staged, so `git status` is clean for it.
    await _write_as_owner(repo, CONFIG_FILE, toml_text)
    await git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{CONFIG_FILE}")
    return head


async def resolve_commit(repo: Path, ref: str) -> str:
    """The full sha of ``ref`` in ``repo``, which must be a commit."""
    check_ref(ref)
    if not await is_repo(repo):
        raise WireError("no_config_repo", f"{repo} is not a git repository")
    try:
        out = await git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
        )
    except WireError:
        raise WireError("unknown_ref", f"no commit {ref!r} in {repo}") from None
    return out.strip()


async def read_config(repo: Path, sha: str) -> str:
    try:
        size = int(await git(repo, "cat-file", "-s", f"{sha}:{CONFIG_FILE}"))
    except (WireError, ValueError):
        raise WireError("bad_config", f"commit {sha[:12]} in {repo} has no {CONFIG_FILE}") from None
    if size <= MAX_CONFIG_BYTES:
        # The objects are the manager's too (a loose object may not hold what its name
        # says): the read itself stops at the cap as well.
        blob = f"{sha}:{CONFIG_FILE}"
        data = await _git_head(repo, MAX_CONFIG_BYTES + 1, "cat-file", "blob", blob)
        size = len(data)
        if size <= MAX_CONFIG_BYTES:
            return data.decode("utf-8", "replace")
    raise WireError(
        "config_too_large",
        f"{CONFIG_FILE} at commit {sha[:12]} in {repo} is {size} bytes or more, over the "
        f"{MAX_CONFIG_BYTES}-byte cap",
    )


async def _git_head(repo: Path, limit: int, *args: str) -> bytes:
    """At most ``limit`` bytes of one git command's stdout; the command is killed then
    (that is not a failure). A command that fails on its own is a ``git_failed``. It runs
    as the repo's owner, like every git command here."""
    git_bin = shutil.which("git") or "git"
    argv, env = _owner_command(repo, [git_bin, *_SAFE, "-C", str(repo), *args])
    chunks: list[bytes] = []
    got = 0
    killed = False
    with trio.move_on_after(GIT_TIMEOUT) as scope:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    check=False,
                    env=env,
                    cwd="/",
                )
            )
            assert process.stdout is not None
            async for chunk in process.stdout:
                chunks.append(bytes(chunk[: limit - got]))
                got += len(chunks[-1])
                if got >= limit:
                    killed = True
                    process.kill()
                    break
    if scope.cancelled_caught:
        raise WireError("git_failed", f"git {args[0]} in {repo} took over {GIT_TIMEOUT:g} s")
    if process.returncode != 0 and not killed:
        raise WireError("git_failed", f"git {args[0]} in {repo} exited with {process.returncode}")
    return b"".join(chunks)


async def root_commit(repo: Path) -> str:
    roots = (await git(repo, "rev-list", "--max-parents=0", "HEAD")).split()
    if not roots:
        raise WireError("git_failed", f"{repo} has no commits")
    return roots[-1]


async def has_commit(repo: Path, sha: str) -> bool:
    if not sha:
        return False
    try:
        await git(repo, "cat-file", "-e", f"{sha}^{{commit}}")
    except WireError:
        return False
    return True
