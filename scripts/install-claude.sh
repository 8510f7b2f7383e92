#!/usr/bin/env bash
# Install the real Claude Code CLI into <repo>/.cache/claude for the e2e tests and demos.
#
# Idempotent: when the binary is already there and runs, it returns at once. The npm package
# ships a native binary (optional dependency @anthropic-ai/claude-code-linux-x64); node is only
# needed for the install itself. Set HIVE_CLAUDE_VERSION to pin a version.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo/.cache/claude"
bin="$prefix/node_modules/.bin/claude"
spec="@anthropic-ai/claude-code${HIVE_CLAUDE_VERSION:+@$HIVE_CLAUDE_VERSION}"

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    echo "claude CLI present: $bin ($("$bin" --version 2>/dev/null))"
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

if ! "$bin" --version >/dev/null 2>&1; then
    echo "installed $spec but $bin does not run" >&2
    exit 1
fi
echo "claude CLI installed: $bin ($("$bin" --version 2>/dev/null))"
