"""The hive's one connection to NATS: nats-py on an asyncio loop in a thread of its own.

hive's IO thread runs trio and nats-py is asyncio; rather than bridge the two loops
(trio-asyncio), the link owns a plain asyncio loop in its own thread, and the actors talk
to it as they talk to the trio side: ``publish`` and ``settle`` hop onto its loop, and
results come back as plain callbacks (the actors turn them into tells). The link decides
nothing: what to publish, when to retry, what to ack are the actors' (see
hive.actors.forwarder and hive.actors.fed_inbox). docs/federation.md says why a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hive.federation.address import control_subject, inbound_subject, stream_name
from hive.federation.permissions import CONSUMER, FLEET_BUCKET, inbox_prefix
from hive.federation.settings import FederationConfig

log = logging.getLogger(__name__)

FETCH_BATCH = 256
# Fetched batches on their way to the store at once: the next fetch overlaps the last
# batch's commit (the receiving actor and the Store keep their order; the consumer's
# max_ack_pending bounds what is out).
BATCHES_IN_FLIGHT = 4
NAK_DELAY = 0.2  # an early message (an earlier one is coming again) waits this long
# JetStream redelivers a message not settled within this. Short, because a delivery lost
# on the way (a reconnect) holds back every later message of its link until then; a
# message delivered twice is stored once.
ACK_WAIT = 5.0


@dataclass(frozen=True)
class Publication:
    """One message to publish; ``token`` comes back with its result."""

    subject: str
    payload: bytes
    msg_id: str
    token: Any


# Results of publishes: (token, stored by JetStream, why not)
PublishedBatch = Callable[[list[tuple[Any, bool, str]]], None]
# (origin hive, request data, respond(reply data)); respond may be called from any thread
ControlHandler = Callable[[str, bytes, Callable[[bytes], None]], None]
FLEET_INTERVAL = 1.0


@dataclass
class _Batch:
    """A fetched batch: the link fetches the next one when every message is settled."""

    left: int
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settled(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


@dataclass(frozen=True)
class Incoming:
    """A message from another hive as NATS delivered it; ``settle`` it once decided."""

    subject: str
    data: bytes
    msg: Any  # nats.aio.msg.Msg
    batch: _Batch


class NatsLink:
    """Connection, this hive's stream and durable consumer, publishes and acks."""

    def __init__(self, fed: FederationConfig, deliver: Callable[[list[Incoming]], bool]) -> None:
        self.fed = fed
        self._deliver = deliver  # to the receiving actor; False: it is not running
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="hive-nats", daemon=True)
        self._main: asyncio.Task[None] | None = None
        self._nc: Any = None
        self._js: Any = None
        self.connected = False
        self.rtt: float | None = None  # seconds, last measured
        self.lag = 0  # messages in this hive's stream not yet settled by its consumer
        # The fleet view (hive.federation.fleet): this hive's row, put into the KV bucket
        # every FLEET_INTERVAL, and every hive's row as last read from it.
        self.local_status: dict[str, Any] | None = None
        self.fleet: dict[str, dict[str, Any]] = {}
        self._on_control: ControlHandler | None = None
        self._results: dict[PublishedBatch, list[tuple[Any, bool, str]]] = {}
        # Publishes waiting for their PubAck, by reply token: the PubAcks come back on
        # one subscription of this link's own (no request, task or timer per message).
        self._pubacks: dict[str, tuple[Any, PublishedBatch]] = {}
        self._puback_prefix = ""
        self._next_token = 0
        self._publishing: asyncio.Lock | None = None  # batches go out whole, in order

    # --- called from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        def cancel() -> None:
            if self._main is not None:
                self._main.cancel()

        try:
            self._loop.call_soon_threadsafe(cancel)
        except RuntimeError:
            return  # the loop is already closed
        self._thread.join(timeout)

    def publish(self, items: list[Publication], done: PublishedBatch) -> None:
        """Publish each to JetStream with its ``Nats-Msg-Id`` (JetStream drops a second
        copy within its duplicate window). ``done`` gets the results in batches (whatever
        came back in one turn of the link's loop), on the link's thread: one thread hop
        per batch, not per message."""
        try:
            self._loop.call_soon_threadsafe(self._start_publishing, items, done)
        except RuntimeError:
            done([(p.token, False, "the NATS link is closed") for p in items])

    def serve_control(self, handler: ControlHandler) -> None:
        """Requests from other hives' operators (``hive.<self>.ctl.<origin>``) go to
        ``handler(origin, data, respond)``; set before ``start``."""
        self._on_control = handler

    def request_future(
        self, subject: str, data: bytes, timeout: float
    ) -> concurrent.futures.Future[Any]:
        """A NATS request started on the link's loop, from any thread; its reply message
        (``.data``) or error comes in the future, which ``cancel`` abandons."""
        if self._nc is None:
            raise ConnectionError("not connected to NATS yet")
        return asyncio.run_coroutine_threadsafe(
            self._nc.request(subject, data, timeout=timeout), self._loop
        )

    def settle(self, items: list[tuple[Incoming, bool]]) -> None:
        """Ack the messages the receiver committed (or need never store, True); nak the
        others (False) to see them again later. One thread hop for the lot."""
        try:
            self._loop.call_soon_threadsafe(self._start_settling, items)
        except RuntimeError:
            pass  # closed: JetStream redelivers them to the next run

    def _start_publishing(self, items: list[Publication], done: PublishedBatch) -> None:
        self._loop.create_task(self._publish_batch(items, done))

    def _start_settling(self, items: list[tuple[Incoming, bool]]) -> None:
        self._loop.create_task(self._settle_batch(items))

    def _report(self, done: PublishedBatch, result: tuple[Any, bool, str]) -> None:
        waiting = self._results.setdefault(done, [])
        waiting.append(result)
        if len(waiting) == 1:
            self._loop.call_soon(self._flush_results, done)

    def _flush_results(self, done: PublishedBatch) -> None:
        results = self._results.pop(done, [])
        if results:
            done(results)

    # --- the link's own thread -----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(self._serve())
        try:
            self._loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.run_until_complete(self._close())
            self._loop.close()

    async def _close(self) -> None:
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.close(), 5)
            except Exception as exc:
                log.warning("federation: closing the NATS connection: %r", exc)

    async def _serve(self) -> None:
        self._nc = await self._connect()
        self._js = self._nc.jetstream()
        await self._ensure_stream()
        psub = await self._retry("the durable consumer", self._subscribe)
        if self._on_control is not None:
            await self._retry("operator requests", self._subscribe_control)
        fleet = asyncio.get_running_loop().create_task(self._fleet())
        try:
            await self._consume(psub)
        finally:
            fleet.cancel()

    async def _retry(self, what: str, attempt: Callable[[], Any]) -> Any:
        while True:
            try:
                return await attempt()
            except Exception as exc:
                log.warning("federation: %s: %r; trying again", what, exc)
                await asyncio.sleep(1.0)

    async def _connect(self) -> Any:
        import nats

        async def on_error(exc: Exception) -> None:
            log.warning("federation: NATS: %r", exc)

        async def on_disconnected() -> None:
            self.connected = False
            log.warning("federation: disconnected from NATS")

        async def on_reconnected() -> None:
            self.connected = True
            log.info("federation: reconnected to NATS")

        async def attempt() -> Any:
            nc = await nats.connect(
                servers=self.fed.servers,
                name=f"hive-{self.fed.name}",
                connect_timeout=2,
                inbox_prefix=inbox_prefix(self.fed.name),
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                **self._credentials(),
            )
            self.connected = True
            return nc

        return await self._retry("connecting to NATS", attempt)

    def _credentials(self) -> dict[str, Any]:
        fed, out = self.fed, dict[str, Any]()
        if fed.user:
            password = fed.password
            if fed.password_file:  # a secret kept out of hive.toml (and the Nix store)
                with open(fed.password_file) as f:
                    password = f.read().strip()
            out.update(user=fed.user, password=password)
        if fed.token:
            out["token"] = fed.token
        if fed.creds:
            out["user_credentials"] = fed.creds
        if fed.nkey_seed:
            out["nkeys_seed"] = fed.nkey_seed
        if fed.tls_ca or fed.tls_cert:
            ctx = ssl.create_default_context(cafile=fed.tls_ca or None)
            if fed.tls_cert:
                ctx.load_cert_chain(fed.tls_cert, fed.tls_key or None)
            out["tls"] = ctx
        return out

    async def _ensure_stream(self) -> None:
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        config = StreamConfig(
            name=stream_name(self.fed.name),
            subjects=[inbound_subject(self.fed.name, "*")],
            num_replicas=self.fed.replicas,
            storage=StorageType.FILE,
            # A message leaves the stream once the receiver acked it (it is in the
            # receiver's store then): the stream holds only what is still on its way.
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
        )

        async def attempt() -> None:
            try:
                await self._js.add_stream(config)
            except BadRequestError:  # it exists with other settings (replicas changed)
                await self._js.update_stream(config)

        await self._retry("this hive's stream", attempt)

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ACK_WAIT,
            max_ack_pending=FETCH_BATCH * 4,
        )
        return await self._js.pull_subscribe(
            inbound_subject(self.fed.name, "*"),
            durable=CONSUMER,
            stream=stream_name(self.fed.name),
            config=config,
        )

    async def _consume(self, psub: Any) -> None:
        import nats.errors

        unsettled: deque[_Batch] = deque()
        while True:
            if not self.connected:
                # A pull request the client buffered while it reconnects would reach the
                # server late, and what it delivered would wait out ACK_WAIT unread.
                await asyncio.sleep(0.1)
                continue
            try:
                msgs = await psub.fetch(FETCH_BATCH, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except Exception as exc:
                log.warning("federation: fetch: %r", exc)
                await asyncio.sleep(0.5)
                continue
            batch = _Batch(len(msgs))
            items = [Incoming(m.subject, m.data, m, batch) for m in msgs]
            if not self._deliver(items):
                self._start_settling([(item, False) for item in items])
                continue
            unsettled.append(batch)
            await self._wait_for_room(unsettled)

    async def _wait_for_room(self, unsettled: deque[_Batch]) -> None:
        """Fetch again at once unless BATCHES_IN_FLIGHT batches are still unsettled."""
        while unsettled and unsettled[0].done.is_set():
            unsettled.popleft()
        while len(unsettled) >= BATCHES_IN_FLIGHT:
            try:
                await asyncio.wait_for(unsettled[0].done.wait(), ACK_WAIT)
            except TimeoutError:
                log.warning("federation: a fetched batch was not settled in %gs", ACK_WAIT)
            unsettled.popleft()

    async def _settle_batch(self, items: list[tuple[Incoming, bool]]) -> None:
        for item, stored in items:
            try:
                if stored:
                    await item.msg.ack()
                else:
                    await item.msg.nak(delay=NAK_DELAY)
            except Exception as exc:  # JetStream redelivers it: the store keeps one copy
                log.debug("federation: settling a message: %r", exc)
            finally:
                item.batch.settled()

    async def _publish_batch(self, items: list[Publication], done: PublishedBatch) -> None:
        if self._js is None or not self.connected:
            # Not handed to the client to buffer while it reconnects: the outbox holds
            # them, and the Forwarder tries again (a partition's worth of buffered
            # repeats would only slow the drain when the link returns).
            for p in items:
                self._report(done, (p.token, False, "not connected to NATS"))
            return
        if self._publishing is None:
            self._publishing = asyncio.Lock()
        async with self._publishing:  # FIFO: a link's batches reach NATS in order
            if not self._puback_prefix:
                prefix = self._nc.new_inbox() + "."
                await self._nc.subscribe(prefix + "*", cb=self._on_puback)
                self._puback_prefix = prefix
            tokens = []
            for p in items:
                self._next_token += 1
                token = str(self._next_token)
                self._pubacks[token] = (p.token, done)
                tokens.append(token)
                try:
                    await self._nc.publish(
                        p.subject, p.payload, reply=self._puback_prefix + token,
                        headers={"Nats-Msg-Id": p.msg_id},
                    )  # fmt: skip
                except Exception as exc:
                    self._fail_publish(token, f"{type(exc).__name__}: {exc}")
        # One timer for the batch: a PubAck not back by then is a failed publish.
        self._loop.call_later(self.fed.publish_timeout, self._expire_publishes, tokens)

    def _expire_publishes(self, tokens: list[str]) -> None:
        for token in tokens:
            self._fail_publish(token, "no PubAck within publish_timeout")

    def _fail_publish(self, token: str, why: str) -> None:
        waiting = self._pubacks.pop(token, None)
        if waiting is not None:
            self._report(waiting[1], (waiting[0], False, why))

    async def _on_puback(self, msg: Any) -> None:
        waiting = self._pubacks.pop(msg.subject[len(self._puback_prefix) :], None)
        if waiting is None:
            return  # it timed out already: the Forwarder publishes it again
        token, done = waiting
        if msg.headers and msg.headers.get("Status") == "503":
            self._report(done, (token, False, "no stream answers on this subject"))
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            answer = {"error": {"description": f"not a PubAck: {msg.data[:80]!r}"}}
        if isinstance(answer, dict) and "error" in answer:
            self._report(done, (token, False, f"JetStream: {answer['error']}"))
        else:
            self._report(done, (token, True, ""))

    # --- the fleet view and operator requests ----------------------------------------------

    async def _subscribe_control(self) -> None:
        loop = asyncio.get_running_loop()
        handler = self._on_control
        assert handler is not None

        async def on_request(msg: Any) -> None:
            origin = msg.subject.rsplit(".", 1)[-1]

            def respond(data: bytes) -> None:
                loop.call_soon_threadsafe(loop.create_task, msg.respond(data))

            handler(origin, bytes(msg.data), respond)

        await self._nc.subscribe(control_subject(self.fed.name, "*"), cb=on_request)

    async def _fleet(self) -> None:
        from nats.js.api import KeyValueConfig

        async def bucket() -> Any:
            try:
                return await self._js.key_value(FLEET_BUCKET)
            except Exception:
                config = KeyValueConfig(bucket=FLEET_BUCKET, history=1, replicas=self.fed.replicas)
                return await self._js.create_key_value(config)

        kv = await self._retry("the fleet bucket", bucket)
        while True:
            try:
                await self._fleet_round(kv)
            except Exception as exc:
                log.debug("federation: fleet view: %r", exc)
            await asyncio.sleep(FLEET_INTERVAL)

    async def _fleet_round(self, kv: Any) -> None:
        from hive.wire import packb

        started = time.monotonic()
        await self._nc.flush(2)
        self.rtt = time.monotonic() - started
        info = await self._js.consumer_info(stream_name(self.fed.name), CONSUMER)
        self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        if self.local_status is not None:
            row = {**self.local_status, "rtt": self.rtt, "lag": self.lag, "ts": time.time()}
            await kv.put(self.fed.name, packb(row))
        # The keys, from the stream's subjects (no consumer: a hive's NATS user may not
        # make one on the bucket), then each hive's latest row.
        prefix = f"$KV.{FLEET_BUCKET}."
        info = await self._js.stream_info(f"KV_{FLEET_BUCKET}", subjects_filter=prefix + ">")
        fleet = {}
        for subject in info.state.subjects or {}:
            hive = subject.removeprefix(prefix)
            seen = await self._fleet_entry(kv, hive)
            if seen is not None:
                fleet[hive] = seen
        self.fleet = fleet

    async def _fleet_entry(self, kv: Any, hive: str) -> dict[str, Any] | None:
        """One hive's row, checked (another hive's row is input: hive.federation.peer_input);
        None for a key that is deleted, empty or not a hive name. One hive's key that
        cannot be read keeps its last row and never costs the others theirs."""
        import nats.js.errors

        from hive.federation.peer_input import fleet_row, hive_name_ok

        if not hive_name_ok(hive):
            return None
        try:
            entry = await kv.get(hive)
        except nats.js.errors.KeyNotFoundError:  # deleted or purged: that hive left
            return None
        except Exception as exc:
            log.debug("federation: the fleet row of %s: %r", hive, exc)
            return self.fleet.get(hive)
        return fleet_row(entry.value) if entry.value else None
