"""New agents' configs: building them from a request, writing and reading agent.toml.

>>> cfg = spawn_config("scout", parent="manager", overrides={"model": "claude-opus-4"})
>>> config_from_toml(agent_toml(cfg), "scout") == cfg
True
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from hive.config import AgentConfig, ConfigError
from hive.wire import WireError, validate_agent_name

# What a spawned agent takes over from the agent that asked for it, unless told otherwise.
INHERITED = ("runtime", "sandbox", "network", "persistent")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ConfigError(f"cannot write {type(value).__name__} to agent.toml")


def agent_toml(cfg: AgentConfig) -> str:
    """agent.toml for ``cfg``: its name and every key that differs from the default."""
    defaults = AgentConfig(name=cfg.name).to_dict()
    lines = [
        "# This agent's config. Edit, commit, then ask for it to be applied:",
        "# request_spawn_commit (a draft) or request_apply_commit (a running agent).",
    ]
    for key, value in cfg.to_dict().items():
        if key == "name" or value != defaults.get(key):
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def config_from_toml(text: str, expected_name: str) -> AgentConfig:
    """Parse agent.toml; its name must be ``expected_name`` (default: that name)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WireError("bad_config", f"agent.toml is not valid TOML: {exc}") from exc
    raw.setdefault("name", expected_name)
    if raw["name"] != expected_name:
        raise WireError(
            "bad_config",
            f"agent.toml names the agent {raw['name']!r}, but it is for {expected_name!r}",
        )
    try:
        return AgentConfig.from_dict(raw, where="agent.toml")
    except ConfigError as exc:
        raise WireError("bad_config", str(exc)) from exc


def spawn_config(
    name: str,
    parent: str,
    overrides: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
) -> AgentConfig:
    """The config of a new agent: defaults, what it inherits from ``template`` (the
    requesting agent's config), then ``overrides`` (any AgentConfig keys)."""
    validate_agent_name(name)
    raw: dict[str, Any] = {"name": name, "parent": parent}
    if template:
        for key in INHERITED:
            if key in template:
                raw[key] = template[key]
    known = set(AgentConfig.model_fields)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in known or key == "name":
            raise WireError("bad_request", f"unknown agent config key {key!r}")
        raw[key] = value
    try:
        return AgentConfig.from_dict(raw, where=f"agent '{name}'")
    except ConfigError as exc:
        raise WireError("bad_config", str(exc)) from exc


# --- what the operator approves: hive's own rendering of the parsed config ----------------


def render_config(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every setting of ``config`` (AgentConfig.to_dict() form) as (key, line), one line
    per setting, env variable and list entry: what takes effect, defaults included, drawn
    by hive from the parsed values (so no comment, attribute or diff driver in the repo can
    change what the operator reads). Strings are JSON-escaped: no control characters."""
    out: list[tuple[str, str]] = []
    for key, value in config.items():
        if value is None:
            out.append((key, f"# {key} not set (no restriction)"))
        elif isinstance(value, dict) and value:
            out += [(key, f"{key}.{k} = {_toml_value(v)}") for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out += [(key, f"{key}[{i}] = {_toml_value(v)}") for i, v in enumerate(value)]
        else:
            out.append((key, f"{key} = {_toml_value(value)}"))
    return out


def config_change(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """The approval's view of a config: for a new agent every setting (``+``), for a
    change the settings that differ (``-`` before, ``+`` after)."""
    new = render_config(after)
    if before is None:
        head = "# the new agent's config as hive parsed it (every setting, defaults included)"
        return "\n".join([head, *(f"+{line}" for _, line in new)]) + "\n"
    old = render_config(before)
    old_lines, new_lines = {line for _, line in old}, {line for _, line in new}
    lines = ["# what changes, as hive parsed it (- now, + after approval; the rest stays)"]
    for key in dict.fromkeys([k for k, _ in old] + [k for k, _ in new]):
        lines += [f"-{line}" for k, line in old if k == key and line not in new_lines]
        lines += [f"+{line}" for k, line in new if k == key and line not in old_lines]
    if len(lines) == 1:
        lines.append("# (no setting changes)")
    return "\n".join(lines) + "\n"
