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
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from hive.federation.settings import FederationConfig
from hive.plugins import RUNTIMES, SANDBOXES
from hive.wire import MAX_BODY_BYTES, MAX_FRAME_BYTES, WireError, validate_agent_name


class ConfigError(ValueError):
    """hive.toml says something hive cannot run; the message names the key."""


# --- the schema's building blocks ----------------------------------------------------------
# Scalars are strict: TOML has real types, and "5" where a number belongs is a mistake to
# name, not to coerce. Lists arrive as lists and are kept as tuples (the config is frozen).

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # a whole number is a fine float; true is not
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Strs = tuple[Str, ...]


def _at_least(low: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not value >= low:  # NaN too
            raise ValueError(f"must be >= {low:g}, got {value!r}")
        return value

    return check


def _above(low: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not value > low:
            raise ValueError(f"must be > {low:g}, got {value!r}")
        return value

    return check


def _one_of(choices: Callable[[], tuple[str, ...]]) -> Callable[[str], str]:
    """A name checked against a list read at validation time (the list may grow)."""

    def check(value: str) -> str:
        if value not in choices():
            raise ValueError(f"must be one of {', '.join(choices())}, got {value!r}")
        return value

    return check


def _agent_name(value: Any) -> str:
    try:
        return validate_agent_name(value)
    except WireError as exc:
        raise ValueError(exc.message) from None


def _parent_name(value: str) -> str:
    return _agent_name(value) if value else value


def _package_dir(value: str) -> str:
    # Its bin/ goes on PATH, where ':' would split it and a relative path would depend on
    # the turn's working directory.
    if not value.startswith("/") or ":" in value:
        raise ValueError(f"must be an absolute directory without ':', got {value!r}")
    return value


NIX_STORE = "/nix/store/"


def _env_table(value: Any) -> dict[str, str]:
    problem = env_problem(value)
    if problem:
        raise ValueError(problem)
    return dict(value)


Env = Annotated[dict[str, str], BeforeValidator(_env_table)]
Count = Annotated[Int, AfterValidator(_at_least(1))]
Limit = Annotated[Int, AfterValidator(_at_least(0))]  # 0: no limit
Days = Annotated[Float, AfterValidator(_at_least(0))]  # 0: keep forever
Money = Annotated[Float, AfterValidator(_at_least(0))]  # US dollars; 0: no limit


_WANT = {
    "string_type": "a string",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "path_type": "a path (a string)",
    "int_parsing": "a whole number",  # text that is not one (a query string)
    "float_parsing": "a number",
}
_BOUNDS = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "is limited to {max_length} characters",
    "string_pattern_mismatch": "must match {pattern}",
}


def _where_of(loc: tuple[int | str, ...]) -> str:
    """('mcp_servers', 0, 'env') -> mcp_servers[0].env"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def explain(errors: list[ErrorDetails], where: str) -> str:
    """One sentence per ValidationError, each naming the key it is about."""
    unknown = [_where_of(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"{where}: unknown key(s) {', '.join(sorted(unknown))}"
    first = errors[0]
    key = _where_of(first["loc"])
    if first["type"] == "value_error":
        message = str(first.get("ctx", {}).get("error", first["msg"]))
        if key in ("", "name"):  # the rule says it all (and names itself)
            return f"{where}: {message}"
        return (
            f"{where}: '{key}' {message}"
            if message.startswith("must")
            else f"{where}: {key}: {message}"
        )
    if first["type"] == "missing":
        return f"{where}: '{key}' is required"
    subject = f"{where}: '{key}'" if key else where
    want = _WANT.get(first["type"])
    if want:
        return f"{subject} must be {want}, got {first['input']!r}"
    bound = _BOUNDS.get(first["type"])
    if bound:
        return f"{subject} " + bound.format(**first.get("ctx", {}))
    return f"{subject}: {first['msg']}"


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], raw: Any, where: str) -> M:
    """``raw`` as a ``model``, or a ConfigError naming the key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc.errors(), where)) from None


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


def env_problem(raw: Any) -> str | None:
    """What is wrong with an ``env`` table as hive would apply it, or None."""
    if not isinstance(raw, dict):
        return "must be a table of strings"
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            return (
                f"{key!r} is not a variable name (letters, digits and _, not starting with a digit)"
            )
        if forbidden_env(key):
            return (
                f"{key} may not be set: it makes the dynamic loader or an "
                "interpreter run code (LD_*, BASH_ENV, PYTHONSTARTUP, NODE_OPTIONS, ... are "
                'refused; docs/security.md, "An agent\'s env", has the list)'
            )
        if not isinstance(value, str) or "\0" in value:
            return f"{key} must be a string without NUL characters"
    return None


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


def _not_hive(name: str) -> str:
    if name == "hive":
        raise ValueError("mcp server name 'hive' is reserved")
    return name


def _lists(value: Any) -> Any:
    """Tuples as lists, all the way down (what the store and the wire carry)."""
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


class McpServerConfig(BaseModel):
    """An extra MCP server for one agent, added to its --mcp-config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[Str, AfterValidator(_not_hive)]
    command: Str
    args: Strs = ()
    env: Env = Field(default_factory=dict)
    allowed_tools: Strs = ()  # empty: the whole server (mcp__<name>)
    # One process for every agent that declares the same command, args and env (the MCP
    # pool, hive.io.mcp_pool); false for a server that keeps per-client state.
    shared: Bool = True


class AgentConfig(BaseModel):
    """One [[agent]] of hive.toml (or a spawned agent's config, as the store keeps it).

    >>> AgentConfig.from_dict({"name": "bob", "runtime": "claude"}).runtime
    'claude'
    >>> AgentConfig.from_dict({"name": "bob", "inbox_cap": "lots"})
    Traceback (most recent call last):
    ...
    hive.config.ConfigError: agent 'bob': 'inbox_cap' must be a whole number, got 'lots'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, BeforeValidator(_agent_name)] = Field(default=None, validate_default=True)
    runtime: Annotated[Str, AfterValidator(_one_of(lambda: RUNTIMES))] = "scripted"
    model: Str = "claude-sonnet-4-5"
    parent: Annotated[Str, AfterValidator(_parent_name)] = ""
    sandbox: Annotated[Str, AfterValidator(_one_of(lambda: SANDBOXES))] = "process"
    network: Bool = True
    # claude: one stream-json process for many turns (the default: a turn then starts in
    # milliseconds, not a process start); false: one process per turn, nothing resident.
    persistent: Bool = True
    allowed_recipients: Strs | None = None  # None: unrestricted
    allowed_tools: Strs = ()
    bash_allow: Strs = ()
    mcp_servers: tuple[McpServerConfig, ...] = ()
    # Directories whose bin/ goes first on PATH in every process of the agent's sandbox.
    packages: tuple[Annotated[Str, AfterValidator(_package_dir)], ...] = ()
    rate_limit_per_minute: Int = 600
    inbox_cap: Int = 10_000
    # Daily (UTC) budgets; 0: none. Over one, the agent finishes its turn and is parked
    # (state over_budget) until the next day or the operator's reset (hive.spend).
    daily_budget_usd: Money = 0.0
    daily_budget_tokens: Limit = 0  # input + output + cache-creation tokens
    prompt: Str = ""  # system prompt addition for the claude runtime
    script: tuple[dict[str, Any], ...] = ()  # scripted runtime: message rules
    on_kick: tuple[dict[str, Any], ...] = ()  # scripted runtime: steps when kicked
    env: Env = Field(default_factory=dict)

    def __init__(self, name: Any = None, /, **values: Any) -> None:
        """``AgentConfig("bob", network=False)``: the name may come first, unnamed."""
        super().__init__(**({"name": name} if name is not None else {}), **values)

    @property
    def is_manager(self) -> bool:
        return self.name == "manager"

    @model_validator(mode="after")
    def _packages_reach_the_sandbox(self) -> AgentConfig:
        # An nspawn container shares the host's /nix/store and nothing else of its files.
        outside = [p for p in self.packages if not p.startswith(NIX_STORE)]
        if self.sandbox == "nspawn" and outside:
            raise ValueError(
                f"packages {', '.join(outside)} are not in {NIX_STORE}, and the nspawn "
                "sandbox's container sees no other host files: use Nix packages "
                '(services.hive.agents.<name>.packages) or sandbox = "bwrap"'
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _lists(self.model_dump())
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "agent") -> AgentConfig:
        """``raw`` checked; errors name the agent once its name is known, else ``where``."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            errors = exc.errors()
        about_name = any(
            e["type"] == "extra_forbidden" or e["loc"][:1] == ("name",) for e in errors
        )
        if isinstance(raw, dict) and not about_name:  # the name is good: say whose config
            where = f"agent '{raw['name']}'"
        raise ConfigError(explain(errors, where)) from None


def _durable(value: str) -> str:
    if value.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError(f"must be FULL, NORMAL or EXTRA, got {value!r}")
    return value


# The models known without a [hive] models list (the CLI's current families and aliases).
DEFAULT_MODELS = (
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-sonnet-4",
    "opus",
    "sonnet",
    "haiku",
)

# Room a frame keeps around one message body: its envelope, the reply around it.
BODY_FRAME_MARGIN = 8 * 1024


class HiveConfig(BaseModel):
    """Settings of one hive. Every field has a default that works on a laptop.

    >>> HiveConfig.from_toml_text("[hive]\\nprune_batch = 0\\n")
    Traceback (most recent call last):
    ...
    hive.config.ConfigError: [hive]: 'prune_batch' must be >= 1, got 0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Path("hive-state")
    run_dir: Path | None = None  # sockets; default <state_dir>/run
    restart_intensity: Count = 5  # R: crashes tolerated ...
    restart_period: Annotated[Float, AfterValidator(_above(0))] = (
        60.0  # ... within T seconds, then the agent is failed
    )
    tree_intensity: Count = 10  # actor restarts tolerated by the Supervisor ...
    tree_period: Annotated[Float, AfterValidator(_above(0))] = (
        60.0  # ... within T seconds, then the daemon exits non-zero
    )
    backoff_initial: Float = 1.0
    backoff_max: Float = 60.0
    rate_limit_backoff: Float = 30.0  # 429/529: wait, not a crash
    # The whole hive's daily (UTC) budgets, across agents; 0: none (hive.spend).
    daily_budget_usd: Money = 0.0
    daily_budget_tokens: Limit = 0
    max_frame_bytes: Int = MAX_FRAME_BYTES
    max_body_bytes: Int = MAX_BODY_BYTES
    max_turn_messages: Int = 50
    # Connections served at once per agent socket, and on the admin socket; one more is
    # refused with too_many_connections. Keeps idle clients from using up the daemon's fds.
    max_agent_connections: Count = 64
    max_admin_connections: Count = 256
    # Replies queued for a client that does not read them; past this it is disconnected.
    max_queued_reply_bytes: Count = 32 << 20
    # Events stored and published per turn, in number and in bytes of text; later ones are
    # counted, not kept (one marker).
    max_turn_events: Count = 10_000
    max_turn_event_bytes: Count = 8 << 20  # a whole transcript fits one admin frame (16 MiB)
    sqlite_synchronous: Annotated[Str, AfterValidator(_durable)] = "FULL"
    dashboard_host: Str = "127.0.0.1"
    dashboard_port: Int = 8417
    dashboard: Bool = True
    admin_group: Str = ""
    # The sandboxes a caller who is not root may put an agent in (the dashboard, hivectl of
    # a hive-admin member: spawn, and approving a spawn or config change), and the only ones
    # the dashboard's terminal opens in. "process" runs an agent as the supervisor's own user
    # (root under systemd), so it is not here unless hive.toml says so
    # (hive.control.privilege; docs/security.md, "Root and the operator").
    operator_sandboxes: tuple[Annotated[Str, AfterValidator(_one_of(lambda: SANDBOXES))], ...] = (
        "bwrap",
        "nspawn",
    )
    claude_bin: Str = "claude"
    # The models `hivectl model` and the dashboard's /model accept without --force (with
    # every agent's configured model); empty: DEFAULT_MODELS.
    models: Strs = ()
    # The interpreter that runs hive's own helpers inside sandboxes (scripted agents,
    # the MCP relay). Empty: the supervisor's own. Set it when that one is not visible to the
    # agents' uids (e.g. a Python under /root with bwrap sandboxes). Either way hive's
    # packages reach it through PYTHONPATH (hive.runtimes.base.helper_python).
    agent_python: Str = ""
    session_idle_seconds: Annotated[Float, AfterValidator(_above(0))] = (
        1800.0  # persistent mode: close a session idle this long
    )
    # A shared MCP server (the MCP pool) with no agent attached this long is stopped.
    mcp_pool_idle_seconds: Annotated[Float, AfterValidator(_above(0))] = 300.0
    # Turn admission (actors/admission.py); 0 turns a limit off. Turns running at once,
    # hive-wide; and the memory (RSS of every agent's process tree, measured in /proc) that
    # turns and resident sessions may use: a turn that would pass it waits in a queue.
    max_concurrent_turns: Limit = 0
    memory_budget_mb: Limit = 0
    notes_compact_bytes: Limit = 32_768  # rewrite state/notes.md past this size (0: never)
    notes_compact_model: Str = ""  # model for that rewrite ("": the agent's own)
    # The operator's mailbox (see hive.store.retention): 0 turns a cap off.
    operator_mailbox_cap: Limit = 10_000  # messages held for the operator, all senders
    operator_mailbox_bytes: Limit = 64 * 1024 * 1024  # their bodies, in bytes
    operator_mail_per_sender: Limit = 1_000  # held from any one agent
    # Retention, pruned by the Store every prune_interval seconds, prune_batch rows per
    # table a pass. Days; 0 keeps forever. Pending messages are never pruned.
    message_retention_days: Days = 30.0  # delivered messages (operator mail included)
    message_retention_rows: Limit = 1_000_000  # and beyond the newest this many ids
    turn_event_retention_days: Days = 14.0  # transcripts of turns that ended this long ago
    turn_retention_days: Days = 90.0  # turn rows (each agent's newest is kept)
    event_retention_days: Days = 90.0
    approval_retention_days: Days = 90.0  # resolved approvals, done scheduled prompts
    prune_interval: Annotated[Float, AfterValidator(_above(0))] = 60.0
    prune_batch: Count = 500
    agents: tuple[AgentConfig, ...] = ()
    federation: FederationConfig | None = None  # [federation]; None: this hive stands alone

    @property
    def sockets_dir(self) -> Path:
        return (self.run_dir or self.state_dir / "run").resolve()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hive.db"

    def agent_dir(self, name: str) -> Path:
        return (self.state_dir / "agents" / name).resolve()

    def known_models(self) -> list[str]:
        """The models an operator may pick without forcing: ``models`` (or the defaults)
        and every configured agent's own."""
        listed = list(self.models or DEFAULT_MODELS)
        return list(dict.fromkeys([*listed, *(a.model for a in self.agents)]))

    def agent(self, name: str) -> AgentConfig | None:
        for a in self.agents:
            if a.name == name:
                return a
        return None

    def with_overrides(self, **kw: Any) -> HiveConfig:
        """A copy with some settings replaced (command-line flags; not re-validated)."""
        return self.model_copy(update=kw)

    @model_validator(mode="after")
    def _body_fits_a_frame(self) -> HiveConfig:
        # A recv reply must be able to carry any one message in one frame.
        room = self.max_frame_bytes - BODY_FRAME_MARGIN
        if self.max_body_bytes > room:
            raise ValueError(
                f"max_body_bytes ({self.max_body_bytes}) must be at most "
                f"max_frame_bytes - {BODY_FRAME_MARGIN} ({room})"
            )
        return self

    @classmethod
    def from_toml_text(cls, text: str, base_dir: Path | None = None) -> HiveConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"hive.toml is not valid TOML: {exc}") from exc
        hive_table = raw.pop("hive", {})
        agents_raw = raw.pop("agent", [])
        federation = raw.pop("federation", None)
        if not isinstance(hive_table, dict):
            raise ConfigError("'hive' must be a table: write [hive] on a line of its own")
        if not isinstance(agents_raw, list) or not all(isinstance(a, dict) for a in agents_raw):
            raise ConfigError("agents are an array of tables: write [[agent]] for each")
        if raw:
            raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(raw))}")
        if "agents" in hive_table:
            raise ConfigError("[hive]: unknown key(s) agents")
        agents = tuple(
            AgentConfig.from_dict(a, where=f"agent #{i + 1}") for i, a in enumerate(agents_raw)
        )
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"agent(s) declared twice: {', '.join(dupes)}")
        if federation is not None:
            federation = validated(FederationConfig, federation, "[federation]")
        cfg = validated(cls, {**hive_table, "agents": agents, "federation": federation}, "[hive]")
        if base_dir is not None:  # relative paths are relative to the file
            paths = {
                k: base_dir / getattr(cfg, k) for k in ("state_dir", "run_dir") if k in hive_table
            }
            cfg = cfg.with_overrides(**paths)
        return cfg

    @classmethod
    def load(cls, path: Path) -> HiveConfig:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_toml_text(text, base_dir=path.parent.resolve())
