"""[federation] in hive.toml, agent@hive addresses and the policy patterns: pure rules."""

from __future__ import annotations

import pytest

from hive.config import AgentConfig, ConfigError, HiveConfig
from hive.federation.address import matches, split
from hive.policy import check_send
from hive.wire import WireError, validate_recipient


def test_a_hive_without_federation_has_none() -> None:
    assert HiveConfig.from_toml_text("[hive]\n").federation is None


def test_federation_table() -> None:
    cfg = HiveConfig.from_toml_text(
        '[federation]\nname = "alpha"\nnats_url = ["nats://127.0.0.1:1", "tls://h:2"]\n'
        'user = "alpha"\npassword = "pw"\n[federation.accept]\n"*" = ["*@beta"]\n'
        'bob = ["carol@gamma"]\n'
    )
    fed = cfg.federation
    assert fed is not None and fed.servers == ["nats://127.0.0.1:1", "tls://h:2"]
    assert fed.accepts("bob", "carol@gamma") and fed.accepts("alice", "x@beta")
    assert not fed.accepts("alice", "carol@gamma")
    single = HiveConfig.from_toml_text('[federation]\nname = "a"\nnats_url = "nats://h:1"\n')
    assert single.federation is not None and single.federation.servers == ["nats://h:1"]


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('name = "Alpha"', "[federation]: invalid hive name 'Alpha'"),
        ('name = "operator"', "'operator' is reserved"),
        ("", "[federation]: 'name'"),
        ('name = "a"\nnats_url = "http://h"', "'http://h' is not a nats:// or tls:// URL"),
        ('name = "a"\nnats_url = []', "must name at least one NATS server"),
        ('name = "a"\nreplicas = 7', "[federation]: 'replicas'"),
        ('name = "a"\nbogus = 1', "[federation]: unknown key(s) bogus"),
        ('name = "a"\n[federation.accept]\nbob = ["carol"]', "must be agent@hive"),
        ('name = "a"\n[federation.accept]\nBob = ["*@b"]', "accept key: invalid agent name"),
    ],
)
def test_bad_federation_tables_say_which_key(table: str, says: str) -> None:
    with pytest.raises(ConfigError) as exc:
        HiveConfig.from_toml_text(f"[federation]\n{table}\n")
    assert says in str(exc.value)


def test_addresses() -> None:
    assert split("bob@beta") == ("bob", "beta") and split("bob") == ("bob", None)
    assert validate_recipient("bob@beta") == "bob@beta"
    assert validate_recipient("operator@beta") == "operator@beta"
    for bad, says in [("bob@", "hive name"), ("@beta", "agent name"), ("b@b@b", "hive name")]:
        with pytest.raises(WireError) as exc:
            validate_recipient(bad)
        assert exc.value.code == "invalid_name" and says in exc.value.message
    assert matches("*@beta", "bob@beta") and matches("bob@*", "bob@gamma")
    assert not matches("*@beta", "bob@gamma") and not matches("*@beta", "bob")


def test_allowed_recipients_name_remote_agents() -> None:
    alice = AgentConfig("alice", allowed_recipients=["manager", "bob@beta", "*@gamma"])
    check_send(alice, "alice", "bob@beta")
    check_send(alice, "alice", "anyone@gamma")
    for to in ("carol@beta", "bob", "bob@delta"):
        with pytest.raises(WireError) as exc:
            check_send(alice, "alice", to)
        assert exc.value.code == "not_allowed"


def test_a_hive_without_federation_never_imports_nats() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hive.daemon, hive.actors.bus, hive.actors.forwarder, hive.cli.hivectl, "
        "hive.control.admin_verbs; print(sorted(m for m in sys.modules if m.split('.')[0] "
        "== 'nats' or m == 'hive.federation.link'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_remote_manager_is_an_address() -> None:
    cfg = HiveConfig.from_toml_text('[federation]\nname = "a"\nmanager = "manager@b"\n')
    assert cfg.federation is not None and cfg.federation.manager == "manager@b"
    with pytest.raises(ConfigError) as exc:
        HiveConfig.from_toml_text('[federation]\nname = "a"\nmanager = "manager"\n')
    assert "not a remote address" in str(exc.value)
