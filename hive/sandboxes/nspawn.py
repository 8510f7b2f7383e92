"""The nspawn sandbox: each turn runs inside the agent's NixOS container ``h-<name>``.

The containers are declared by the hive NixOS module (nix/module.nix): one per agent, with
its own package set, ``privateUsers`` set to the agent's uid block (uid 0 inside is
``uid_base + 65536 * slot`` outside), the agent's directory bound at the same path, and a
private network when the agent has none. The sockets dir is bound read-only as a whole, so
that a socket the supervisor re-creates is seen at once; prepare() makes each socket 0600
and its own agent's, so a container can connect to its own socket only.

The container runs systemd; a turn is not a container boot but a process entered into the
running container's namespaces:

    nsenter --target <leader> --all --setuid 0 --setgid 0 --wdns=<cwd> -- <argv>

``--all`` includes the user namespace, so the turn is container-root, i.e. the agent's
unprivileged uid on the host, never host root. The process stays a child of the supervisor,
so cancelling a turn is killing its process group, as with the other backends.

>>> container_name("bob")
'h-bob'
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hive.config import AgentConfig
from hive.process import AgentPaths, ProcessSpec
from hive.sandboxes.base import SandboxError
from hive.sandboxes.bwrap import home_is_inside, split_agent_env
from hive.sandboxes.uids import give_to

CONTAINER_PREFIX = "h-"
# nixos-container refuses longer names: the host side of the veth pair is "ve-<name>" and
# interface names stop at 15 characters.
MAX_CONTAINER_NAME = 11
CONF_DIR = Path("/etc/nixos-containers")
LEADER_COMMAND = ("machinectl", "show", "--property=Leader", "--value", "{machine}")

_ENTER = """\
leader=$({lookup}) && [ -n "$leader" ] && [ "$leader" != 0 ] || {{
  echo "hive: container $0 is not running; start it: systemctl start container@$0" >&2
  exit 125
}}
wd=$1; shift
exec nsenter --target "$leader" --all --setuid 0 --setgid 0 --wdns="$wd" -- "$@"
"""


def container_name(agent_name: str) -> str:
    """``h-<name>``, or a SandboxError when nixos-container would refuse it."""
    name = CONTAINER_PREFIX + agent_name
    if len(name) > MAX_CONTAINER_NAME:
        longest = MAX_CONTAINER_NAME - len(CONTAINER_PREFIX)
        raise SandboxError(
            f"agent name '{agent_name}' is too long for the nspawn sandbox: its container "
            f"'{name}' has {len(name)} characters and nixos-container allows "
            f"{MAX_CONTAINER_NAME}; use a name of at most {longest} characters, or the "
            f"bwrap sandbox for this agent"
        )
    return name


def read_container_conf(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of /etc/nixos-containers/<name>.conf (shell syntax, no expansion)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            parts = shlex.split(value) or [""]
            values[key] = parts[0]
    return values


class NspawnSandbox:
    """Runs turns inside the declarative NixOS container of each agent (see module doc)."""

    name = "nspawn"

    def __init__(
        self, *, conf_dir: Path = CONF_DIR, leader_command: Sequence[str] = LEADER_COMMAND
    ) -> None:
        self.conf_dir = conf_dir
        self.leader_command = tuple(leader_command)

    def container_uid(self, agent_name: str) -> int:
        """The host uid of root in the agent's container, from the container's conf file."""
        machine = container_name(agent_name)
        conf = self.conf_dir / f"{machine}.conf"
        if not conf.is_file():
            raise SandboxError(
                f"agent '{agent_name}': no container {machine} ({conf} is missing); declare "
                f"the agent in services.hive.agents and run `nixos-rebuild switch`"
            )
        private_users = read_container_conf(conf).get("PRIVATE_USERS", "")
        if not private_users.isdigit() or int(private_users) == 0:
            raise SandboxError(
                f"container {machine} runs with PRIVATE_USERS={private_users or 'no'}; hive "
                f"needs a numeric uid base so that uid 0 inside is unprivileged outside "
                f"(the hive module sets containers.{machine}.privateUsers)"
            )
        return int(private_users)

    def prepare(self, agent: AgentConfig, paths: AgentPaths) -> None:
        uid = self.container_uid(agent.name)
        for d in (paths.root, paths.state, paths.work, paths.config):
            if d.is_symlink():
                raise SandboxError(f"agent '{agent.name}': {d} is a symlink; remove it")
        paths.ensure()
        give_to(paths.root, uid, uid, always=(paths.state, paths.config))
        if paths.socket.exists() and not paths.socket.is_symlink():
            # Host root owns it otherwise, which container root cannot connect to.
            os.lchown(paths.socket, uid, uid)
            os.chmod(paths.socket, 0o600)

    def wrap(self, spec: ProcessSpec, agent: AgentConfig, paths: AgentPaths) -> ProcessSpec:
        machine = container_name(agent.name)
        cwd = spec.cwd or paths.work
        lookup = shlex.join(a.format(machine=machine) for a in self.leader_command)
        script = _ENTER.format(lookup=lookup)
        # sh and nsenter run as host root: the agent's own variables are set by env(1)
        # inside the container, after nsenter has entered its user namespace.
        env, agent_env = split_agent_env(spec.env, agent)
        inner = ("/usr/bin/env", *(f"{k}={v}" for k, v in agent_env.items())) if agent_env else ()
        argv = ("/bin/sh", "-c", script, machine, str(cwd), *inner, *spec.argv)
        # The host's HOME means nothing inside the container (see bwrap.home_is_inside).
        if not home_is_inside(spec, paths):
            env = {**env, "HOME": str(paths.state)}
        # The outer sh starts in a host dir; the turn's cwd is set inside by --wdns.
        return replace(spec, argv=argv, env=env, cwd=paths.root)
