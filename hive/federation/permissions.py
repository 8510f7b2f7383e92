"""The NATS permissions of one hive's user: what lets a receiver trust the subject.

A hive may publish messages only on subjects whose last token is its own name
(``hive.*.in.<self>``), so the origin a receiver reads from the subject is proven by NATS,
not claimed by the sender. It may use the JetStream API of its own stream and consumer
only, and receives replies only on its own inbox prefix (``_INBOX_<self>``), so it can
neither read another hive's stream nor listen to another hive's replies. Operator
requests follow the same rule (``hive.<dest>.ctl.<self>``), and in the fleet bucket a
hive writes only its own key.

>>> allow = publish_allow("alpha")
>>> allow[:2], "$KV.hive_fleet.alpha" in allow, "$KV.hive_fleet.beta" in allow
(['hive.*.in.alpha', 'hive.*.ctl.alpha'], True, False)
>>> subscribe_allow("alpha")
['_INBOX_alpha.>', 'hive.alpha.ctl.*']
"""

from __future__ import annotations

from hive.federation.address import control_subject, inbound_subject, stream_name

FLEET_BUCKET = "hive_fleet"

CONSUMER = "hive-in"  # the durable consumer of a hive's own inbound stream


def inbox_prefix(hive: str) -> str:
    """Where NATS answers this hive's requests (publish acks, fetches)."""
    return f"_INBOX_{hive}"


def publish_allow(hive: str) -> list[str]:
    """Messages and operator requests as ``hive`` only; its own stream's API; its own key
    of the fleet bucket (reading every key)."""
    stream, kv = stream_name(hive), f"KV_{FLEET_BUCKET}"
    return [
        inbound_subject("*", hive),
        control_subject("*", hive),
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
        f"$JS.API.CONSUMER.INFO.{stream}.{CONSUMER}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{CONSUMER}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}",
        f"$JS.ACK.{stream}.{CONSUMER}.>",
        f"$KV.{FLEET_BUCKET}.{hive}",
        f"$JS.API.STREAM.INFO.{kv}",
        f"$JS.API.STREAM.CREATE.{kv}",
        f"$JS.API.STREAM.MSG.GET.{kv}",
        f"$JS.API.DIRECT.GET.{kv}.>",
    ]


def subscribe_allow(hive: str) -> list[str]:
    """Replies on its own inbox prefix; operator requests addressed to it."""
    return [f"{inbox_prefix(hive)}.>", control_subject(hive, "*")]


def user_block(hive: str, password: str) -> str:
    """One entry of a nats-server ``authorization { users = [...] }`` list
    (``allow_responses``: it may answer the requests it receives, and only those)."""
    pub = ", ".join(f'"{s}"' for s in publish_allow(hive))
    sub = ", ".join(f'"{s}"' for s in subscribe_allow(hive))
    return (
        f'{{ user: "{hive}", password: "{password}", permissions: {{\n'
        f"  publish: {{ allow: [{pub}] }},\n"
        f"  subscribe: {{ allow: [{sub}] }},\n"
        f"  allow_responses: true }} }}"
    )


def authorization(passwords: dict[str, str]) -> str:
    """The ``authorization`` block of a nats-server config for these hives."""
    users = ",\n".join(user_block(h, p) for h, p in sorted(passwords.items()))
    return f"authorization {{ users = [\n{users}\n] }}"
