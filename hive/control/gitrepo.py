"""Agent config repos: git, run on the trio thread with ``trio.run_process``.

An agent's config dir (``<state>/agents/<name>/config``) is a git repo whose ``agent.toml``
is the agent's config. The manager edits and commits there; hive only reads commits by
their full sha. The repo is the manager's to write, so nothing here lets it run code as
the supervisor: hive commits with plumbing only (``hash-object --no-filters``,
``update-index --cacheinfo``, ``commit-tree``: no hooks, no clean/smudge filters), diffs are
taken without external diff drivers or textconv, files are read with ``cat-file``, and the
repo's ownership check is waived explicitly (sandboxed agents own their files under
another uid).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import partial
from pathlib import Path

import trio

from hive import safefs
from hive.wire import WireError

CONFIG_FILE = "agent.toml"
MAX_DIFF_BYTES = 256 * 1024
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
    "GIT_TERMINAL_PROMPT": "0",
}
_SAFE = (
    "-c", "safe.directory=*",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "diff.external=",
)  # fmt: skip


def check_ref(ref: str) -> str:
    if not _REF_RE.match(ref) or ".." in ref:
        raise WireError(
            "bad_request",
            f"invalid git ref {ref!r}: use a branch, tag or commit sha (e.g. HEAD or a1b2c3d)",
        )
    return ref


async def git(repo: Path, *args: str, index: Path | None = None) -> str:
    """Run one git command in ``repo``; its stdout, or a WireError with git's own words."""
    env = {**os.environ, **_ENV}
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    if index is None:
        env.pop("GIT_INDEX_FILE", None)
    with trio.move_on_after(GIT_TIMEOUT) as scope:
        result = await trio.run_process(
            ["git", *_SAFE, "-C", str(repo), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    if scope.cancelled_caught:
        raise WireError("git_failed", f"git {args[0]} in {repo} took over {GIT_TIMEOUT:g} s")
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise WireError("git_failed", f"git {args[0]} in {repo}: {err[-1] if err else 'failed'}")
    return result.stdout.decode("utf-8", "replace")


async def is_repo(repo: Path) -> bool:
    return await trio.Path(repo / ".git").exists()


async def commit_config(repo: Path, toml_text: str, message: str) -> str:
    """Make ``repo`` a git repo whose HEAD holds ``toml_text`` as agent.toml; return HEAD.

    A new repo gets it as its first commit. An existing one (a draft asked for again after
    a restart, a kept repo of a destroyed agent) gets a commit on top only if agent.toml at
    HEAD differs, so asking twice is harmless."""
    # The repo may be a kept dir of a destroyed agent, which could have left links where
    # the config dir or agent.toml belong: walk and write without following any (the
    # repo's parent is an agent's root, which no agent can replace).
    await trio.to_thread.run_sync(safefs.makedirs, repo.parent, repo.name)
    if not await is_repo(repo):
        await git(repo, "init", "-q", "-b", "main")
    config_file = Path(repo.name) / CONFIG_FILE
    await trio.to_thread.run_sync(safefs.write_text_atomic, repo.parent, config_file, toml_text)
    blob = (await git(repo, "hash-object", "-w", "--no-filters", "--", CONFIG_FILE)).strip()
    try:
        head = (await git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")).strip()
    except WireError:
        head = ""  # no commit yet
    if head:
        try:
            current = (await git(repo, "rev-parse", f"{head}:{CONFIG_FILE}")).strip()
        except WireError:
            current = ""
        if current == blob:
            return head
    # Build the tree in a private index, so the manager's own staging is left alone.
    index = repo / ".git" / "hive-index.tmp"
    try:
        await git(repo, "read-tree", *([head] if head else ["--empty"]), index=index)
        await git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{CONFIG_FILE}",
                  index=index)  # fmt: skip
        tree = (await git(repo, "write-tree", index=index)).strip()
    finally:
        await trio.Path(index).unlink(missing_ok=True)
    parents = ["-p", head] if head else []
    commit = (await git(repo, "commit-tree", tree, *parents, "-m", message)).strip()
    await git(repo, "update-ref", "-m", message, "HEAD", commit, *([head] if head else []))
    # The checked-out agent.toml is this content: stage it, so `git status` is clean for it.
    await git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{CONFIG_FILE}")
    return commit


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
    (that is not a failure). A command that fails on its own is a ``git_failed``."""
    env = {**os.environ, **_ENV}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    chunks: list[bytes] = []
    got = 0
    killed = False
    with trio.move_on_after(GIT_TIMEOUT) as scope:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    ["git", *_SAFE, "-C", str(repo), *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    check=False,
                    env=env,
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


async def diff(repo: Path, base: str, sha: str) -> str:
    """The change from ``base`` to ``sha`` as a patch (cut at MAX_DIFF_BYTES).

    The repo is the manager's, and a commit may add a file of any size: git's output is
    read only up to the cut, never whole."""
    data = await _git_head(
        repo, MAX_DIFF_BYTES + 1,
        "diff", "--no-ext-diff", "--no-textconv", "--no-color", "--stat", "--patch",
        base, sha, "--",
    )  # fmt: skip
    if len(data) <= MAX_DIFF_BYTES:
        return data.decode("utf-8", "replace")
    text = data[:MAX_DIFF_BYTES].decode("utf-8", "ignore")
    return text + f"\n[diff cut at {MAX_DIFF_BYTES} bytes]\n"


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
