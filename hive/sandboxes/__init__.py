"""Sandbox backends: process (plain subprocess), bwrap (bubblewrap), nspawn (NixOS).

Each is found by its name through the registry (``hive.plugins.SANDBOXES``, the entry points
of the ``hive.sandboxes`` group); "auto" is a choice among them, registered the same way.

>>> get_sandbox("process").name
'process'
>>> get_sandbox("auto").name in ("bwrap", "process")
True
"""

from __future__ import annotations

from pathlib import Path

from hive.plugins import SANDBOXES, UnknownPlugin
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
    "auto_sandbox",
    "bwrap_usable",
    "container_name",
    "get_sandbox",
    "nspawn_sandbox",
]


def auto_sandbox() -> Sandbox:
    """The ``auto`` entry: bwrap where it works, else process."""
    return BwrapSandbox() if bwrap_usable() else ProcessSandbox()


def nspawn_sandbox() -> Sandbox:
    """The ``nspawn`` entry: refused, saying why, on a host without systemd."""
    if not Path("/run/systemd/system").is_dir():
        raise SandboxError(
            "the nspawn sandbox needs a NixOS host booted with systemd (no "
            '/run/systemd/system here); use sandbox = "bwrap" on other hosts'
        )
    return NspawnSandbox()


def get_sandbox(name: str) -> Sandbox:
    """The backend called ``name`` in hive.toml.

    Raises SandboxError, saying what to install, when the backend cannot run on this host,
    and for a name no installed package registers.
    """
    try:
        factory = SANDBOXES.factory(name)
    except UnknownPlugin as exc:
        raise SandboxError(str(exc)) from None
    sandbox: Sandbox = factory()
    return sandbox
