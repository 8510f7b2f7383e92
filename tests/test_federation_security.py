"""Each hive connects as its own NATS user (hive.federation.permissions): the hives
exchange mail with only those permissions, and a client holding one hive's credentials
can neither publish as another hive nor read another hive's stream: NATS refuses it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hive.federation.permissions import authorization, inbox_prefix
from hive.federation.store import LinkOut, encode
from hive.wire import Envelope
from tests.federation_support import (
    assert_exactly_once_in_order,
    hive_config,
    nats,
    received,
    send_all,
)
from tests.hive_harness import RunningHive
from tests.nats_harness import NatsServer

__all__ = ["nats"]  # the fixture

PASSWORDS = {"alpha": "alpha-secret", "beta": "beta-secret"}


def _hive(
    make_hive: Callable[..., RunningHive], tmp: Path, name: str, url: str, agent: str
) -> RunningHive:
    """alpha's password is in hive.toml; beta's in a file (``password_file``)."""
    secret = tmp / f"nats-password-{name}"
    secret.write_text(PASSWORDS[name] + "\n")
    password = (
        f'password = "{PASSWORDS[name]}"' if name == "alpha" else f'password_file = "{secret}"'
    )
    creds = f'user = "{name}"\n{password}\noperators = ["alpha"]\n'
    return make_hive(hive_config(name, url, [agent], federation_extra=creds), name=name)


async def _as_alpha(url: str, attempt: Callable[[Any, Any], Any]) -> str:
    """Run ``attempt(nc, js)`` on a connection with alpha's credentials; what happened."""
    import nats

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        url,
        user="alpha",
        password=PASSWORDS["alpha"],
        inbox_prefix=inbox_prefix("alpha"),
        error_cb=on_error,
        max_reconnect_attempts=0,
    )
    try:
        outcome = await attempt(nc, nc.jetstream())
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    await nc.flush(2)
    await nc.close()
    return f"{outcome} | {' | '.join(errors)}".lower()


def _forged(seq: int, sender: str, epoch: int = 0, first: int = 1) -> bytes:
    env = Envelope(999_000 + seq, sender, "bob@beta", f"from {sender}")
    return encode(env, LinkOut(seq, epoch, first))


def _link_to_beta(alpha: RunningHive) -> tuple[int, int]:
    """The epoch of alpha's link to beta now, and the first number of that epoch."""
    with alpha.db() as db:
        epoch, first = db.execute(
            "SELECT epoch, epoch_first FROM fed_links_out WHERE dest = 'beta'"
        ).fetchall()[0]
    return int(epoch), int(first)


def test_hive_users_exchange_mail_and_cannot_forge_an_origin(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive], tmp_path: Path
) -> None:
    server = nats(extra=authorization(PASSWORDS))
    alpha = _hive(make_hive, tmp_path, "alpha", server.url, "alice")
    beta = _hive(make_hive, tmp_path, "beta", server.url, "bob")
    to_beta = send_all(alpha, "alice", "bob@beta", 10)
    to_alpha = send_all(beta, "bob", "alice@alpha", 10)
    beta.wait_until(lambda: len(received(beta, "alpha")) >= 10, what="alpha's mail")
    alpha.wait_until(lambda: len(received(alpha, "beta")) >= 10, what="beta's mail")
    assert_exactly_once_in_order(received(beta, "alpha"), to_beta)
    assert_exactly_once_in_order(received(alpha, "beta"), to_alpha)

    async def publish_as_gamma(nc: Any, js: Any) -> Any:
        return await js.publish("hive.beta.in.gamma", _forged(1, "mallory"), timeout=2)

    async def read_betas_stream(nc: Any, js: Any) -> Any:
        sub = await js.pull_subscribe_bind("hive-in", "HIVE_beta")
        return await sub.fetch(1, timeout=2)

    async def listen_to_beta(nc: Any, js: Any) -> Any:
        await nc.subscribe("hive.beta.in.>")
        await nc.flush(2)
        return "subscribed"

    url = server.url
    forged = asyncio.run(_as_alpha(url, publish_as_gamma))
    assert 'permissions violation for publish to "hive.beta.in.gamma"' in forged
    read = asyncio.run(_as_alpha(url, read_betas_stream))
    assert "permissions violation for publish" in read and "hive_beta" in read
    listened = asyncio.run(_as_alpha(url, listen_to_beta))
    assert 'permissions violation for subscription to "hive.beta.in.>"' in listened

    # The control: alpha's credentials do publish as alpha (the origin NATS proves).
    epoch, first = _link_to_beta(alpha)

    async def publish_as_alpha(nc: Any, js: Any) -> Any:
        forged = _forged(11, "mallory", epoch, first)
        return await js.publish("hive.beta.in.alpha", forged, timeout=5)

    assert "puback" in asyncio.run(_as_alpha(url, publish_as_alpha))
    beta.wait_until(lambda: len(received(beta, "alpha")) == 11, what="alpha's own publish")
    assert received(beta, "alpha")[-1][1] == "mallory@alpha"
    assert not received(beta, "gamma")


def test_fleet_view_and_operator_verbs_within_the_permissions(
    nats: Callable[..., NatsServer], make_hive: Callable[..., RunningHive], tmp_path: Path
) -> None:
    server = nats(extra=authorization(PASSWORDS))
    alpha = _hive(make_hive, tmp_path, "alpha", server.url, "alice")
    beta = _hive(make_hive, tmp_path, "beta", server.url, "bob")
    alpha.wait_until(
        lambda: {r["hive"] for r in alpha.admin("list")["fleet"]} == {"alpha", "beta"},
        what="beta's row in alpha's fleet view",
    )
    alpha.admin("pause", names=["bob@beta"])
    assert beta.status("bob")["paused"] is True

    async def overwrite_betas_row(nc: Any, js: Any) -> Any:
        kv = await js.key_value("hive_fleet")
        return await kv.put("beta", b"forged")

    async def ask_beta_as_gamma(nc: Any, js: Any) -> Any:
        return await nc.request("hive.beta.ctl.gamma", b"", timeout=2)

    url = server.url
    assert 'permissions violation for publish to "$kv.hive_fleet.beta"' in asyncio.run(
        _as_alpha(url, overwrite_betas_row)
    )
    assert 'permissions violation for publish to "hive.beta.ctl.gamma"' in asyncio.run(
        _as_alpha(url, ask_beta_as_gamma)
    )
    rows = {r["hive"]: r for r in alpha.admin("list")["fleet"]}
    assert [a["name"] for a in rows["beta"]["agents"]] == ["bob"]
