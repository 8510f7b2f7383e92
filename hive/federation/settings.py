"""The ``[federation]`` table of hive.toml (a pydantic model, like the rest of the config).

[federation]
name = "alpha"                          # this hive's name (agent-name rules)
nats_url = "nats://127.0.0.1:4222"      # or a list, for a cluster
user = "alpha"                          # credentials as NATS takes them
password = "..."
[federation.accept]                     # who may write to which local agent
"*" = ["*@beta"]                        # any agent of beta, to any of ours
bob = ["carol@gamma"]                   # and carol of gamma, to bob only
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from hive.federation.address import split, validate_address, validate_hive_name
from hive.wire import WireError, validate_agent_name


def _hive_name(value: str) -> str:
    try:
        return validate_hive_name(value)
    except WireError as exc:
        raise ValueError(exc.message) from None


def _servers(value: str | tuple[str, ...]) -> tuple[str, ...]:
    urls = (value,) if isinstance(value, str) else value
    if not urls:
        raise ValueError("must name at least one NATS server")
    for url in urls:
        if not url.startswith(("nats://", "tls://")):
            raise ValueError(f"{url!r} is not a nats:// or tls:// URL")
    return urls


def _accept(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    for local, patterns in value.items():
        if local != "*":
            try:
                validate_agent_name(local)
            except WireError as exc:
                raise ValueError(f"accept key: {exc.message}") from None
        for p in patterns:
            agent, hive = split(p)
            if hive is None or not agent or not hive:
                raise ValueError(f"accept pattern {p!r} must be agent@hive ('*' for any)")
    return value


def _hives(value: tuple[str, ...]) -> tuple[str, ...]:
    for hive in value:
        if hive != "*":
            _hive_name(hive)
    return value


def _remote_address(value: str) -> str:
    if value:
        try:
            validate_address(value)
        except WireError as exc:
            raise ValueError(exc.message) from None
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


class FederationConfig(BaseModel):
    """This hive's place in a federation: its name, its NATS servers and credentials, and
    which remote agents may write to which of its agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, AfterValidator(_hive_name)]
    nats_url: Annotated[StrictStr | tuple[StrictStr, ...], AfterValidator(_servers)] = (
        "nats://127.0.0.1:4222",
    )
    user: StrictStr = ""
    password: StrictStr = ""
    password_file: StrictStr = ""  # the password, read from this file at start
    token: StrictStr = ""
    creds: StrictStr = ""  # a .creds file (JWT + nkey seed)
    nkey_seed: StrictStr = ""  # a file holding an nkey seed
    tls_ca: StrictStr = ""
    tls_cert: StrictStr = ""
    tls_key: StrictStr = ""
    replicas: Annotated[StrictInt, Field(ge=1, le=5)] = 1  # of this hive's inbound stream
    accept: Annotated[dict[StrictStr, tuple[StrictStr, ...]], AfterValidator(_accept)] = Field(
        default_factory=dict
    )
    # Where this hive's crash and failure notices go when its manager is on another hive
    # ("manager@beta"; "": the local manager, as without federation).
    manager: Annotated[StrictStr, AfterValidator(_remote_address)] = ""
    # Hives whose operators may act on this hive's agents ("*": every hive).
    operators: Annotated[tuple[StrictStr, ...], AfterValidator(_hives)] = ()
    publish_timeout: Annotated[StrictFloat | StrictInt, AfterValidator(_positive)] = 5.0
    max_in_flight: Annotated[StrictInt, Field(ge=1, le=65536)] = 512  # per destination hive
    retry_seconds: Annotated[StrictFloat | StrictInt, AfterValidator(_positive)] = 0.5

    @property
    def servers(self) -> list[str]:
        return [self.nats_url] if isinstance(self.nats_url, str) else list(self.nats_url)

    def accepts(self, local_agent: str, remote: str) -> bool:
        """Whether ``remote`` (``agent@hive``) may write to ``local_agent``."""
        from hive.federation.address import matches_any

        return matches_any(self.accept.get(local_agent, ()), remote) or matches_any(
            self.accept.get("*", ()), remote
        )
