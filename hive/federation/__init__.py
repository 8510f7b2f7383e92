"""Federation: several hives on several hosts exchange messages over NATS JetStream.

A hive with no ``[federation]`` table never imports this package's NATS parts (``nats``
is imported only by ``hive.federation.link``). See docs/federation.md.
"""
