"""Addresses across hives: ``bob@beta`` is agent bob on hive beta; a bare name is local.

Pure functions, used by the Bus (routing a send), the policy (``allowed_recipients``
patterns such as ``"*@beta"``) and the receiving hive (its ``accept`` patterns).

>>> split("bob@beta")
('bob', 'beta')
>>> split("bob")
('bob', None)
>>> matches("*@beta", "bob@beta"), matches("bob@beta", "carol@beta"), matches("*@*", "x@y")
(True, False, True)
"""

from __future__ import annotations

from hive.wire import OPERATOR, WireError, validate_agent_name


def split(address: str) -> tuple[str, str | None]:
    """``(agent, hive)``; ``hive`` is None for a bare (local) name. Not validated."""
    agent, sep, hive = address.partition("@")
    return (agent, hive) if sep else (address, None)


def validate_hive_name(name: object) -> str:
    """A hive name follows the agent-name rules (it is a NATS subject token too)."""
    try:
        return validate_agent_name(name)
    except WireError as exc:
        raise WireError("invalid_name", exc.message.replace("agent name", "hive name")) from None


def validate_address(address: str) -> str:
    """``address`` if it is a valid ``agent@hive``, else a WireError saying which half is bad."""
    agent, hive = split(address)
    if hive is None:
        raise WireError("invalid_name", f"{address!r} is not a remote address (agent@hive)")
    if agent != OPERATOR:
        validate_agent_name(agent)
    validate_hive_name(hive)
    return address


def matches(pattern: str, address: str) -> bool:
    """Whether ``address`` (``agent@hive``) fits ``pattern``: ``agent@hive``, ``*@hive``,
    ``agent@*`` or ``*@*``."""
    p_agent, p_hive = split(pattern)
    agent, hive = split(address)
    if p_hive is None or hive is None:
        return pattern == address
    return p_agent in ("*", agent) and p_hive in ("*", hive)


def matches_any(patterns: tuple[str, ...] | list[str], address: str) -> bool:
    return any(matches(p, address) for p in patterns)


def stream_name(hive: str) -> str:
    """The JetStream stream that holds what other hives sent ``hive``."""
    return f"HIVE_{hive}"


def inbound_subject(dest: str, origin: str) -> str:
    """Where ``origin`` publishes messages for ``dest``: NATS lets each hive's user
    publish only on subjects ending in its own name (docs/federation.md, "Security")."""
    return f"hive.{dest}.in.{origin}"


def control_subject(dest: str, origin: str) -> str:
    """Where ``origin``'s operator asks ``dest`` to act on one of its agents."""
    return f"hive.{dest}.ctl.{origin}"
