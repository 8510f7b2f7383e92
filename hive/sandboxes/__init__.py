"""Sandbox backends: process (plain subprocess), bwrap (bubblewrap), nspawn (NixOS)."""

from __future__ import annotations

from hive.sandboxes.base import Sandbox, SandboxError
from hive.sandboxes.process import ProcessSandbox

__all__ = ["ProcessSandbox", "Sandbox", "SandboxError", "get_sandbox"]


def get_sandbox(name: str) -> Sandbox:
    if name == "process":
        return ProcessSandbox()
    raise SandboxError(f"unknown sandbox backend '{name}'")
