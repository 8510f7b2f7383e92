"""services.hive.federation: the module renders a [federation] table that hive loads, and
nothing of it when the option is off. (Evaluated like tests/test_nix.py.)"""

from __future__ import annotations

from hive.config import HiveConfig
from tests.test_nix import evaluate


def test_federation_options_render_a_table_hive_loads() -> None:
    out = evaluate(
        {
            "agents": {"bob": {"sandbox": "bwrap"}},
            "federation": {
                "enable": True,
                "name": "alpha",
                "natsUrls": ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"],
                "user": "alpha",
                "passwordFile": "/run/secrets/nats-alpha",
                "replicas": 3,
                "accept": {"*": ["*@beta"], "bob": ["carol@gamma"]},
                "operators": ["beta"],
            },
        }
    )
    fed = HiveConfig.from_toml_text(out["toml"]).federation
    assert fed is not None
    assert fed.name == "alpha" and fed.replicas == 3 and fed.operators == ("beta",)
    assert fed.servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
    assert (fed.user, fed.password, fed.password_file) == ("alpha", "", "/run/secrets/nats-alpha")
    assert fed.accepts("bob", "carol@gamma") and fed.accepts("x", "y@beta")
    assert not fed.accepts("x", "carol@gamma")


def test_no_federation_table_unless_enabled() -> None:
    out = evaluate({"agents": {"bob": {"sandbox": "bwrap"}}})
    assert "federation" not in out["toml"]
    assert HiveConfig.from_toml_text(out["toml"]).federation is None
