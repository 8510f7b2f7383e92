"""hive.toml: what a valid file gives the daemon, and the clear error every mistake gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from hive.config import AgentConfig, ConfigError, HiveConfig

FULL = """
[hive]
state_dir = "state"
restart_intensity = 3
restart_period = 10.0
backoff_initial = 0.5
max_body_bytes = 4096

[[agent]]
name = "manager"

[[agent]]
name = "alice"
parent = "manager"
model = "claude-opus-4-1"
allowed_recipients = ["manager", "bob"]
rate_limit_per_minute = 30
[[agent.script]]
match = "ping"
do = [{op = "reply", body = "pong"}]

[[agent]]
name = "bob"
runtime = "claude"
sandbox = "bwrap"
[[agent.mcp_servers]]
name = "echo"
command = "echo-mcp"
args = ["--loud"]
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        HiveConfig.from_toml_text(text)
    return str(info.value)


# --- what a good file gives ------------------------------------------------------------------


def test_a_full_file_is_read_into_settings_and_agents(tmp_path: Path) -> None:
    cfg = HiveConfig.from_toml_text(FULL, base_dir=tmp_path)
    assert cfg.state_dir == tmp_path / "state"  # relative paths are relative to the file
    assert (cfg.restart_intensity, cfg.restart_period) == (3, 10.0)
    assert cfg.backoff_initial == 0.5
    assert cfg.max_body_bytes == 4096
    assert [a.name for a in cfg.agents] == ["manager", "alice", "bob"]

    manager = cfg.agent("manager")
    assert manager is not None and manager.is_manager
    assert manager.allowed_recipients is None  # unset: unrestricted

    alice = cfg.agent("alice")
    assert alice is not None and not alice.is_manager
    assert alice.parent == "manager"
    assert alice.model == "claude-opus-4-1"
    assert alice.allowed_recipients == ("manager", "bob")
    assert alice.rate_limit_per_minute == 30
    assert alice.script == ({"match": "ping", "do": [{"op": "reply", "body": "pong"}]},)

    bob = cfg.agent("bob")
    assert bob is not None
    assert (bob.runtime, bob.sandbox) == ("claude", "bwrap")
    [echo] = bob.mcp_servers
    assert (echo.name, echo.command, echo.args) == ("echo", "echo-mcp", ("--loud",))

    assert cfg.agent("nobody") is None


def test_an_empty_file_is_a_hive_with_no_agents_and_working_defaults() -> None:
    cfg = HiveConfig.from_toml_text("")
    assert cfg.agents == ()
    assert cfg.max_frame_bytes == 1 << 20
    assert cfg.restart_intensity >= 1 and cfg.restart_period > 0
    assert cfg.dashboard_host == "127.0.0.1"  # never exposed by default


def test_paths_derive_from_the_state_dir(tmp_path: Path) -> None:
    cfg = HiveConfig(state_dir=tmp_path)
    assert cfg.db_path == tmp_path / "hive.db"
    assert cfg.sockets_dir == (tmp_path / "run").resolve()
    assert cfg.agent_dir("bob") == (tmp_path / "agents" / "bob").resolve()
    assert HiveConfig(state_dir=tmp_path, run_dir=tmp_path / "r").sockets_dir == tmp_path / "r"


def test_agent_config_survives_a_dict_round_trip() -> None:
    cfg = HiveConfig.from_toml_text(FULL)
    for agent in cfg.agents:
        assert AgentConfig.from_dict(agent.to_dict()) == agent


def test_load_reads_a_file_relative_to_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "hive.toml"
    path.write_text(FULL)
    cfg = HiveConfig.load(path)
    assert cfg.state_dir == tmp_path.resolve() / "state"
    assert len(cfg.agents) == 3


def test_load_of_a_missing_file_says_which_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        HiveConfig.load(missing)
    assert str(missing) in str(info.value)
    assert "cannot read" in str(info.value)


# --- mistakes, each with a message that names what is wrong ----------------------------------


def test_bad_toml_says_so_with_the_line() -> None:
    message = error_of("[hive]\nrestart_intensity = = 3\n")
    assert "not valid TOML" in message
    assert "line 2" in message


def test_unknown_top_level_key_is_named() -> None:
    message = error_of('[hive]\n[agents]\nname = "bob"\n')
    assert "unknown top-level key" in message and "agents" in message


def test_unknown_hive_key_is_named() -> None:
    message = error_of("[hive]\nrestart_intensitty = 3\n")
    assert "[hive]" in message and "restart_intensitty" in message


def test_unknown_agent_keys_are_all_named_with_the_agent() -> None:
    message = error_of('[[agent]]\nname = "bob"\nmodle = "x"\nruntim = "scripted"\n')
    assert "agent #1" in message
    assert "modle" in message and "runtim" in message


def test_unknown_key_in_a_later_agent_names_its_position() -> None:
    message = error_of('[[agent]]\nname = "a"\n[[agent]]\nname = "b"\ncolour = "red"\n')
    assert "agent #2" in message and "colour" in message


def test_bad_runtime_lists_the_runtimes() -> None:
    message = error_of('[[agent]]\nname = "bob"\nruntime = "gpt"\n')
    assert "agent 'bob'" in message
    assert "runtime" in message and "scripted" in message and "claude" in message


def test_bad_sandbox_lists_the_sandboxes() -> None:
    message = error_of('[[agent]]\nname = "bob"\nsandbox = "docker"\n')
    assert "agent 'bob'" in message
    assert "sandbox" in message and "bwrap" in message


def test_duplicate_agents_are_named() -> None:
    message = error_of(
        '[[agent]]\nname = "bob"\n[[agent]]\nname = "alice"\n[[agent]]\nname = "bob"\n'
    )
    assert "declared twice" in message and "bob" in message and "alice" not in message


@pytest.mark.parametrize(
    ("name_line", "needle"),
    [
        ('name = "Bob"', "invalid agent name"),
        ('name = "bob\\n"', "invalid agent name"),
        ('name = "operator"', "reserved"),
        ('name = "hive"', "reserved"),
        ("name = 7", "must be a string"),
        ("", "must be a string"),
    ],
    ids=["capital", "newline", "operator", "hive", "int", "missing"],
)
def test_bad_agent_name_is_refused(name_line: str, needle: str) -> None:
    message = error_of(f"[[agent]]\n{name_line}\n")
    assert "agent #1" in message and needle in message


def test_bad_parent_name_is_refused() -> None:
    message = error_of('[[agent]]\nname = "bob"\nparent = "Not A Name"\n')
    assert "agent 'bob'" in message and "parent" in message


@pytest.mark.parametrize(
    "key", ["allowed_recipients", "allowed_tools", "bash_allow", "packages", "script", "on_kick"]
)
def test_list_keys_must_be_lists(key: str) -> None:
    message = error_of(f'[[agent]]\nname = "bob"\n{key} = "everything"\n')
    assert f"'{key}' must be a list" in message and "agent 'bob'" in message


def test_mcp_server_needs_name_and_command() -> None:
    message = error_of('[[agent]]\nname = "bob"\n[[agent.mcp_servers]]\nname = "x"\n')
    assert "mcp_servers[0]" in message and "command" in message


def test_mcp_server_may_not_be_called_hive() -> None:
    message = error_of(
        '[[agent]]\nname = "bob"\n[[agent.mcp_servers]]\nname = "hive"\ncommand = "x"\n'
    )
    assert "'hive' is reserved" in message


@pytest.mark.parametrize(
    ("line", "key"),
    [("restart_intensity = 0", "restart_intensity"), ("restart_period = 0", "restart_period")],
)
def test_restart_intensity_must_allow_a_restart(line: str, key: str) -> None:
    assert key in error_of(f"[hive]\n{line}\n")


def test_sqlite_synchronous_must_be_durable() -> None:
    message = error_of('[hive]\nsqlite_synchronous = "OFF"\n')
    assert "sqlite_synchronous" in message and "FULL" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[hive]\nrestart_intensity = "five"\n', "restart_intensity"),
        ('[hive]\nmax_body_bytes = "big"\n', "max_body_bytes"),
        ('[[agent]]\nname = "bob"\nrate_limit_per_minute = "many"\n', "rate_limit_per_minute"),
        ('[[agent]]\nname = "bob"\nnetwork = "yes"\n', "network"),
        ("hive = 5\n", "hive"),
        ('[agent]\nname = "bob"\n', "[[agent]]"),
    ],
    ids=[
        "hive-int-as-string",
        "hive-size-as-string",
        "agent-int-as-string",
        "agent-bool-as-string",
        "hive-not-a-table",
        "agent-table-not-array",
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_key(text: str, key: str) -> None:
    # Not a TypeError from deep inside, and not accepted to crash the daemon later.
    message = error_of(text)
    assert key in message


def test_a_body_must_fit_one_recv_frame() -> None:
    message = error_of("[hive]\nmax_frame_bytes = 100000\nmax_body_bytes = 95000\n")
    assert "max_body_bytes" in message and "max_frame_bytes" in message


# --- the schema checks inside lists and tables too -------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[agent]]\nname = "bob"\nallowed_recipients = ["alice", 3]\n', "allowed_recipients[1]"),
        ('[[agent]]\nname = "bob"\npackages = [true]\n', "packages[0]"),
        (
            '[[agent]]\nname = "bob"\n[[agent.mcp_servers]]\nname = "x"\ncommand = "y"\n'
            "args = [1]\n",
            "mcp_servers[0].args[0]",
        ),
        ("[hive]\nstate_dir = 5\n", "state_dir"),
    ],
    ids=["recipient-not-a-string", "package-not-a-string", "mcp-arg-not-a-string", "path-int"],
)
def test_a_wrong_item_inside_a_list_is_named_with_its_position(text: str, needle: str) -> None:
    # Before the schema, these were taken as given (or coerced, or a TypeError).
    assert needle in error_of(text)


def test_the_agent_schema_is_published_as_json_schema() -> None:
    schema = AgentConfig.model_json_schema()
    assert "name" in schema["properties"] and schema["additionalProperties"] is False


@pytest.mark.parametrize("module", ["hive.cli.hivectl", "hive.runtimes.scripted_agent"])
def test_short_lived_programs_start_without_the_schema_library(module: str) -> None:
    # pydantic costs ~70 ms to import; hivectl runs per command, a scripted agent per turn,
    # and neither needs the hive.toml schema.
    import subprocess
    import sys

    code = f"import sys, {module}; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
