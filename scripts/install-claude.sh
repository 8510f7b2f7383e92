#!/usr/bin/env bash
# Install the real Claude Code CLI into <repo>/.cache/claude for the e2e tests and demos.
#
# Idempotent: when the pinned version is already there and runs, it returns at once. The npm
# package ships a native binary (optional dependency @anthropic-ai/claude-code-linux-x64); node
# is only needed for the install itself. The version is pinned in one place,
# hive/runtimes/claude_version.py (CLAUDE_CLI_VERSION), read from there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo/.cache/claude"
bin="$prefix/node_modules/.bin/claude"
version="$(sed -n 's/^CLAUDE_CLI_VERSION = "\(.*\)"$/\1/p' "$repo/hive/runtimes/claude_version.py")"
if [[ -z "$version" ]]; then
    echo "no CLAUDE_CLI_VERSION in $repo/hive/runtimes/claude_version.py" >&2
    exit 1
fi
spec="@anthropic-ai/claude-code@$version"
if [[ "${1:-}" == --print-version ]]; then
    echo "$version"
    exit 0
fi

installed="$("$bin" --version 2>/dev/null || true)"
if [[ "$installed" == "$version "* || "$installed" == "$version" ]]; then
    echo "claude CLI present: $bin ($installed)"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is needed to install the claude CLI: apt-get install -y npm" >&2
    exit 1
fi

mkdir -p "$prefix"
# Everything under .cache is local build output, never part of the repository.
[[ -f "$repo/.cache/.gitignore" ]] || printf '*\n' >"$repo/.cache/.gitignore"

npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$spec"

installed="$("$bin" --version 2>/dev/null || true)"
if [[ "$installed" != "$version "* && "$installed" != "$version" ]]; then
    echo "installed $spec but $bin says '$installed'" >&2
    exit 1
fi
echo "claude CLI installed: $bin ($("$bin" --version 2>/dev/null))"
