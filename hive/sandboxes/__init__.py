"""Sandbox backends: process (plain subprocess), bwrap (bubblewrap), nspawn (NixOS).

>>> get_sandbox("process").name
'process'
>>> get_sandbox("auto").name in ("bwrap", "process")
True
"""

from __future__ import annotations

from pathlib import Path

from hive.sandboxes.base import Sandbox, SandboxError
from hive.sandboxes.bwrap import BwrapSandbox, Limits, bwrap_usable
from hive.sandboxes.nspawn import NspawnSandbox, container_name
from hive.sandboxes.process import ProcessSandbox

__all__ = [
    "BwrapSandbox",
    "Limits",
    "NspawnSandbox",
    "ProcessSandbox",
    "Sandbox",
    "SandboxError",
    "bwrap_usable",
    "container_name",
    "get_sandbox",
]

NAMES = ("process", "bwrap", "nspawn", "auto")


def get_sandbox(name: str) -> Sandbox:
    """The backend called ``name`` in hive.toml; "auto" is bwrap where it works, else process.

    Raises SandboxError, saying what to install, when the backend cannot run on this host.
    """
    if name == "process":
        return ProcessSandbox()
    if name == "bwrap":
        return BwrapSandbox()
    if name == "auto":
        return BwrapSandbox() if bwrap_usable() else ProcessSandbox()
    if name == "nspawn":
        if not Path("/run/systemd/system").is_dir():
            raise SandboxError(
                "the nspawn sandbox needs a NixOS host booted with systemd (no "
                '/run/systemd/system here); use sandbox = "bwrap" on other hosts'
            )
        return NspawnSandbox()
    raise SandboxError(f"unknown sandbox backend '{name}': use one of {', '.join(NAMES)}")
