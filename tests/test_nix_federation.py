"""services.hive.federation: the module (on nixpkgs' real module system, like
tests/test_nix.py) renders a [federation] table that hive loads, and none when it is off;
a wrong type is refused."""

from __future__ import annotations

from hive.config import HiveConfig
from tests.test_nix import evaluate, nixpkgs, refusal

__all__ = ["nixpkgs"]  # the fixture


def test_federation_options_render_a_table_hive_loads(nixpkgs: str) -> None:
    out = evaluate(
        nixpkgs,
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
                "manager": "manager@beta",
            },
        },
    )
    fed = HiveConfig.from_toml_text(out["toml"]).federation
    assert fed is not None
    assert fed.name == "alpha" and fed.replicas == 3 and fed.operators == ("beta",)
    assert fed.manager == "manager@beta"
    assert fed.servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
    assert (fed.user, fed.password, fed.password_file) == ("alpha", "", "/run/secrets/nats-alpha")
    assert fed.accepts("bob", "carol@gamma") and fed.accepts("x", "y@beta")
    assert not fed.accepts("x", "carol@gamma")


def test_no_federation_table_unless_enabled(nixpkgs: str) -> None:
    out = evaluate(nixpkgs, {"agents": {"bob": {"sandbox": "bwrap"}}})
    assert "federation" not in out["toml"]
    assert HiveConfig.from_toml_text(out["toml"]).federation is None


def test_a_wrong_federation_value_is_refused(nixpkgs: str) -> None:
    error = refusal(nixpkgs, {"federation": {"enable": True, "name": "a", "replicas": "3"}})
    assert "services.hive.federation.replicas" in error


def test_an_enabled_federation_needs_a_name(nixpkgs: str) -> None:
    error = refusal(nixpkgs, {"federation": {"enable": True}})
    assert "services.hive.federation.name: set this hive's name" in error
