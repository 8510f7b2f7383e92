"""The NATS permissions of one hive's user: what lets a receiver trust the subject.

A hive may publish messages only on subjects whose last token is its own name
(``hive.*.in.<self>``), so the origin a receiver reads from the subject is proven by NATS,
not claimed by the sender. It may use the JetStream API of its own stream and consumer
only, and receives replies only on its own inbox prefix (``_INBOX_<self>``), so it can
neither read another hive's stream nor listen to another hive's replies.

>>> print(user_block("alpha", "secret"))  # doctest: +NORMALIZE_WHITESPACE
{ user: "alpha", password: "secret", permissions: {
  publish: { allow: ["hive.*.in.alpha", "$JS.API.INFO", "$JS.API.STREAM.INFO.HIVE_alpha",
    "$JS.API.STREAM.CREATE.HIVE_alpha", "$JS.API.STREAM.UPDATE.HIVE_alpha",
    "$JS.API.CONSUMER.INFO.HIVE_alpha.hive-in", "$JS.API.CONSUMER.CREATE.HIVE_alpha.>",
    "$JS.API.CONSUMER.DURABLE.CREATE.HIVE_alpha.hive-in",
    "$JS.API.CONSUMER.MSG.NEXT.HIVE_alpha.hive-in", "$JS.ACK.HIVE_alpha.hive-in.>"] },
  subscribe: { allow: ["_INBOX_alpha.>"] } } }
"""

from __future__ import annotations

from hive.federation.address import inbound_subject, stream_name

CONSUMER = "hive-in"  # the durable consumer of a hive's own inbound stream


def inbox_prefix(hive: str) -> str:
    """Where NATS answers this hive's requests (publish acks, fetches)."""
    return f"_INBOX_{hive}"


def publish_allow(hive: str) -> list[str]:
    stream = stream_name(hive)
    return [
        inbound_subject("*", hive),
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
        f"$JS.API.CONSUMER.INFO.{stream}.{CONSUMER}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{CONSUMER}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}",
        f"$JS.ACK.{stream}.{CONSUMER}.>",
    ]


def user_block(hive: str, password: str) -> str:
    """One entry of a nats-server ``authorization { users = [...] }`` list."""
    allow = ", ".join(f'"{s}"' for s in publish_allow(hive))
    return (
        f'{{ user: "{hive}", password: "{password}", permissions: {{\n'
        f"  publish: {{ allow: [{allow}] }},\n"
        f'  subscribe: {{ allow: ["{inbox_prefix(hive)}.>"] }} }} }}'
    )


def authorization(passwords: dict[str, str]) -> str:
    """The ``authorization`` block of a nats-server config for these hives."""
    users = ",\n".join(user_block(h, p) for h, p in sorted(passwords.items()))
    return f"authorization {{ users = [\n{users}\n] }}"
