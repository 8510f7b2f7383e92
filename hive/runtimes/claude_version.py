"""The claude CLI version hive is built and tested against: the one place that names it.

``scripts/install-claude.sh`` installs exactly this version (for the tests and the demos;
it reads the line below), the end-to-end tests refuse any other, the pre-flight's install
hint names it, and the docs that quote a version are checked against it
(``tests/test_claude_version.py``). To move to a newer CLI: change it here, run
``bash scripts/install-claude.sh``, then the claude tests. (The NixOS module installs
nixpkgs' ``claude-code``, whose version the pinned nixpkgs decides.)

>>> CLAUDE_CLI_VERSION.count(".")
2
"""

CLAUDE_CLI_VERSION = "2.1.197"
CLAUDE_CLI_PACKAGE = "@anthropic-ai/claude-code"
