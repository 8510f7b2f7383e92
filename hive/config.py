"""hive.toml: the hive's settings and its declared agents.

>>> cfg = HiveConfig.from_toml_text('''
... [[agent]]
... name = "manager"
... runtime = "scripted"
... ''')
>>> cfg.agents[0].name
'manager'
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hive.wire import MAX_BODY_BYTES, MAX_FRAME_BYTES, WireError, validate_agent_name

RUNTIMES = ("scripted", "claude")
SANDBOXES = ("process", "bwrap", "nspawn", "auto")


class ConfigError(ValueError):
    """hive.toml says something hive cannot run; the message names the key."""


def check_scalars(cls: type, values: dict[str, Any], where: str) -> None:
    """Reject a value whose type differs from the field's default (a string where a
    number belongs, ...) with a message naming the key, before it can fail deep inside."""
    for f in fields(cls):
        if f.name not in values or f.default is MISSING or f.default is None:
            continue
        value, default = values[f.name], f.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            want = "true or false"
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and isinstance(default, int) and not isinstance(default, bool):
                ok = isinstance(value, int)
            want = "a whole number" if isinstance(default, int) else "a number"
        elif isinstance(default, str):
            ok, want = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise ConfigError(f"{where}: '{f.name}' must be {want}, got {value!r}")


# Environment variables an agent's config may not set. Each makes a program load or run
# code it was not asked to: the dynamic loader (LD_*, GLIBC_TUNABLES, GCONV_PATH, ...), a
# shell's start-up files, an interpreter's start-up hooks and module paths. hive applies an
# agent's env only inside its sandbox (after the drop to the agent's uid), so these could
# not reach root anyway; refusing them as config keeps the agent's own tools (hive-mcp, the
# scripted runner, claude) running the code hive ships, and tells the operator at once.
FORBIDDEN_ENV_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "HIVE_", "MALLOC_")
FORBIDDEN_ENV_NAMES = frozenset(
    {
        "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF",
        "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH",
        "PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONINSPECT",
        "PYTHONBREAKPOINT", "PYTHONEXECUTABLE", "PYTHONPLATLIBDIR", "PYTHONWARNINGS",
        "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB",
        "NODE_OPTIONS", "NODE_PATH", "NODE_REPL_EXTERNAL_MODULE",
        "RUBYOPT", "RUBYLIB", "LUA_INIT", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
        "CLAUDE_CONFIG_DIR",
    }
)  # fmt: skip
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def forbidden_env(name: str) -> bool:
    upper = name.upper()
    return upper in FORBIDDEN_ENV_NAMES or upper.startswith(FORBIDDEN_ENV_PREFIXES)


def checked_env(raw: Any, where: str) -> dict[str, str]:
    """An ``env`` table as hive will apply it, or a ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table of strings")
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ConfigError(
                f"{where}: {key!r} is not a variable name (letters, digits and _, "
                "not starting with a digit)"
            )
        if forbidden_env(key):
            raise ConfigError(
                f"{where}: {key} may not be set: it makes the dynamic loader or an "
                "interpreter run code (LD_*, BASH_ENV, PYTHONSTARTUP, NODE_OPTIONS, ... are "
                'refused; docs/security.md, "An agent\'s env", has the list)'
            )
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"{where}: {key} must be a string without NUL characters")
        env[key] = value
    return env


def drop_forbidden_env(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A stored agent config without the env keys refused since it was stored; the keys
    dropped (top-level ``env`` only: what reaches the agent's processes)."""
    env = raw.get("env")
    if not isinstance(env, dict):
        return raw, []
    refused = [k for k in env if isinstance(k, str) and forbidden_env(k)]
    if not refused:
        return raw, []
    return {**raw, "env": {k: v for k, v in env.items() if k not in refused}}, refused


def stored_agent_config(name: str, raw: dict[str, Any]) -> tuple[AgentConfig, list[str]]:
    """An agent config as the store holds it, less the env keys refused since it was
    stored (so an upgrade starts that agent without them rather than not at all), and
    the keys it dropped."""
    kept, refused = drop_forbidden_env(raw)
    return AgentConfig.from_dict(kept, where=f"stored agent '{name}'"), refused


@dataclass(frozen=True)
class McpServerConfig:
    """An extra MCP server for one agent, added to its --mcp-config."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] = ()  # empty: the whole server (mcp__<name>)


@dataclass(frozen=True)
class AgentConfig:
    name: str
    runtime: str = "scripted"
    model: str = "claude-sonnet-4-5"
    parent: str = ""
    sandbox: str = "process"
    network: bool = True
    persistent: bool = False  # claude: one stream-json process for many turns
    allowed_recipients: tuple[str, ...] | None = None  # None: unrestricted
    allowed_tools: tuple[str, ...] = ()
    bash_allow: tuple[str, ...] = ()
    mcp_servers: tuple[McpServerConfig, ...] = ()
    packages: tuple[str, ...] = ()
    rate_limit_per_minute: int = 600
    inbox_cap: int = 10_000
    prompt: str = ""  # system prompt addition for the claude runtime
    script: tuple[dict[str, Any], ...] = ()  # scripted runtime: message rules
    on_kick: tuple[dict[str, Any], ...] = ()  # scripted runtime: steps when kicked
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_manager(self) -> bool:
        return self.name == "manager"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "mcp_servers":
                value = [
                    {
                        "name": s.name,
                        "command": s.command,
                        "args": list(s.args),
                        "env": dict(s.env),
                        "allowed_tools": list(s.allowed_tools),
                    }
                    for s in value
                ]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "agent") -> AgentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        try:
            name = validate_agent_name(raw.get("name"))
        except WireError as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
        where = f"agent '{name}'"
        values: dict[str, Any] = dict(raw)
        for key in ("allowed_tools", "bash_allow", "packages", "script", "on_kick"):
            if key in values:
                if not isinstance(values[key], list):
                    raise ConfigError(f"{where}: '{key}' must be a list")
                values[key] = tuple(values[key])
        if values.get("allowed_recipients") is not None:
            if not isinstance(values["allowed_recipients"], list):
                raise ConfigError(f"{where}: 'allowed_recipients' must be a list")
            values["allowed_recipients"] = tuple(values["allowed_recipients"])
        servers = []
        for i, s in enumerate(values.get("mcp_servers", [])):
            if not isinstance(s, dict) or "name" not in s or "command" not in s:
                raise ConfigError(f"{where}: mcp_servers[{i}] needs 'name' and 'command'")
            if s["name"] == "hive":
                raise ConfigError(f"{where}: mcp server name 'hive' is reserved")
            servers.append(
                McpServerConfig(
                    name=str(s["name"]),
                    command=str(s["command"]),
                    args=tuple(str(a) for a in s.get("args", [])),
                    env=checked_env(s.get("env", {}), f"{where}: mcp_servers[{i}].env"),
                    allowed_tools=tuple(str(t) for t in s.get("allowed_tools", [])),
                )
            )
        values["mcp_servers"] = tuple(servers)
        check_scalars(cls, values, where)
        values["env"] = checked_env(values.get("env", {}), f"{where}: env")
        cfg = cls(**values)
        if cfg.runtime not in RUNTIMES:
            raise ConfigError(f"{where}: runtime must be one of {', '.join(RUNTIMES)}")
        if cfg.sandbox not in SANDBOXES:
            raise ConfigError(f"{where}: sandbox must be one of {', '.join(SANDBOXES)}")
        if cfg.parent:
            try:
                validate_agent_name(cfg.parent)
            except WireError as exc:
                raise ConfigError(f"{where}: parent: {exc.message}") from exc
        return cfg


# Room a frame keeps around one message body: its envelope, the reply around it.
BODY_FRAME_MARGIN = 8 * 1024


@dataclass(frozen=True)
class HiveConfig:
    """Settings of one hive. Every field has a default that works on a laptop."""

    state_dir: Path = Path("hive-state")
    run_dir: Path | None = None  # sockets; default <state_dir>/run
    restart_intensity: int = 5  # R: crashes tolerated ...
    restart_period: float = 60.0  # ... within T seconds, then the agent is failed
    tree_intensity: int = 10  # actor restarts tolerated by the Supervisor ...
    tree_period: float = 60.0  # ... within T seconds, then the daemon exits non-zero
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    rate_limit_backoff: float = 30.0  # 429/529: wait, not a crash
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_turn_messages: int = 50
    # Connections served at once per agent socket, and on the admin socket; one more is
    # refused with too_many_connections. Keeps idle clients from using up the daemon's fds.
    max_agent_connections: int = 64
    max_admin_connections: int = 256
    # Replies queued for a client that does not read them; past this it is disconnected.
    max_queued_reply_bytes: int = 32 << 20
    # Events stored and published per turn, in number and in bytes of text; later ones are
    # counted, not kept (one marker).
    max_turn_events: int = 10_000
    max_turn_event_bytes: int = 8 << 20  # a whole transcript fits one admin frame (16 MiB)
    sqlite_synchronous: str = "FULL"
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8417
    dashboard: bool = True
    admin_group: str = ""
    claude_bin: str = "claude"
    # The interpreter that runs hive's own helpers inside sandboxes (scripted agents,
    # hive-mcp). Empty: the supervisor's own. Set it when that one is not visible to the
    # agents' uids (e.g. a Python under /root with bwrap sandboxes).
    agent_python: str = ""
    session_idle_seconds: float = 1800.0  # persistent mode: close a session idle this long
    notes_compact_bytes: int = 32_768  # rewrite state/notes.md past this size (0: never)
    notes_compact_model: str = ""  # model for that rewrite ("": the agent's own)
    # The operator's mailbox (see hive.store.retention): 0 turns a cap off.
    operator_mailbox_cap: int = 10_000  # messages held for the operator, all senders
    operator_mailbox_bytes: int = 64 * 1024 * 1024  # their bodies, in bytes
    operator_mail_per_sender: int = 1_000  # held from any one agent
    # Retention, pruned by the Store every prune_interval seconds, prune_batch rows per
    # table a pass. Days; 0 keeps forever. Pending messages are never pruned.
    message_retention_days: float = 30.0  # delivered messages (operator mail included)
    message_retention_rows: int = 1_000_000  # and beyond the newest this many ids
    turn_event_retention_days: float = 14.0  # transcripts of turns that ended this long ago
    turn_retention_days: float = 90.0  # turn rows (each agent's newest is kept)
    event_retention_days: float = 90.0
    approval_retention_days: float = 90.0  # resolved approvals, done scheduled prompts
    prune_interval: float = 60.0
    prune_batch: int = 500
    agents: tuple[AgentConfig, ...] = ()

    @property
    def sockets_dir(self) -> Path:
        return (self.run_dir or self.state_dir / "run").resolve()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hive.db"

    def agent_dir(self, name: str) -> Path:
        return (self.state_dir / "agents" / name).resolve()

    def agent(self, name: str) -> AgentConfig | None:
        for a in self.agents:
            if a.name == name:
                return a
        return None

    def with_overrides(self, **kw: Any) -> HiveConfig:
        return replace(self, **kw)

    @classmethod
    def from_toml_text(cls, text: str, base_dir: Path | None = None) -> HiveConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"hive.toml is not valid TOML: {exc}") from exc
        hive_table = raw.pop("hive", {})
        agents_raw = raw.pop("agent", [])
        if not isinstance(hive_table, dict):
            raise ConfigError("'hive' must be a table: write [hive] on a line of its own")
        if not isinstance(agents_raw, list) or not all(isinstance(a, dict) for a in agents_raw):
            raise ConfigError("agents are an array of tables: write [[agent]] for each")
        hive_raw = dict(hive_table)
        if raw:
            raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(raw))}")
        known = {f.name for f in fields(cls)} - {"agents"}
        unknown = sorted(set(hive_raw) - known)
        if unknown:
            raise ConfigError(f"[hive]: unknown key(s) {', '.join(unknown)}")
        check_scalars(
            cls, {k: v for k, v in hive_raw.items() if k not in ("state_dir", "run_dir")}, "[hive]"
        )
        for key in ("state_dir", "run_dir"):
            if key in hive_raw:
                p = Path(hive_raw[key])
                if base_dir is not None and not p.is_absolute():
                    p = base_dir / p
                hive_raw[key] = p
        agents = tuple(
            AgentConfig.from_dict(a, where=f"agent #{i + 1}") for i, a in enumerate(agents_raw)
        )
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"agent(s) declared twice: {', '.join(dupes)}")
        cfg = cls(agents=agents, **hive_raw)
        if cfg.restart_intensity < 1 or cfg.restart_period <= 0:
            raise ConfigError("[hive]: restart_intensity must be >= 1 and restart_period > 0")
        if cfg.tree_intensity < 1 or cfg.tree_period <= 0:
            raise ConfigError("[hive]: tree_intensity must be >= 1 and tree_period > 0")
        if cfg.session_idle_seconds <= 0 or cfg.notes_compact_bytes < 0:
            raise ConfigError(
                "[hive]: session_idle_seconds must be > 0 and notes_compact_bytes >= 0"
            )
        if cfg.max_body_bytes > cfg.max_frame_bytes - BODY_FRAME_MARGIN:
            # A recv reply must be able to carry any one message in one frame.
            raise ConfigError(
                f"[hive]: max_body_bytes ({cfg.max_body_bytes}) must be at most "
                f"max_frame_bytes - {BODY_FRAME_MARGIN} ({cfg.max_frame_bytes - BODY_FRAME_MARGIN})"
            )
        limits = ("max_agent_connections", "max_admin_connections", "max_queued_reply_bytes",
                  "max_turn_events", "max_turn_event_bytes")  # fmt: skip
        for key in limits:
            if getattr(cfg, key) < 1:
                raise ConfigError(f"[hive]: {key} must be >= 1")
        _check_retention(cfg)
        if cfg.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("[hive]: sqlite_synchronous must be FULL, NORMAL or EXTRA")
        return cfg

    @classmethod
    def load(cls, path: Path) -> HiveConfig:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_toml_text(text, base_dir=path.parent.resolve())


def _check_retention(cfg: HiveConfig) -> None:
    limits = (
        "operator_mailbox_cap", "operator_mailbox_bytes", "operator_mail_per_sender",
        "message_retention_days", "message_retention_rows", "turn_event_retention_days",
        "turn_retention_days", "event_retention_days", "approval_retention_days",
    )  # fmt: skip
    negative = [k for k in limits if not getattr(cfg, k) >= 0]  # NaN too
    if negative:
        raise ConfigError(f"[hive]: {', '.join(negative)} must be >= 0 (0: no limit)")
    if not cfg.prune_interval > 0 or cfg.prune_batch < 1:
        raise ConfigError("[hive]: prune_interval must be > 0 and prune_batch >= 1")
