"""The event publisher port on Kafka, with confluent-kafka (librdkafka).

Guarantees, from the relay's point of view:

- **all or nothing**: :meth:`KafkaEventPublisher.publish` returns only when the broker
  acknowledged every message (``acks=all``); if any delivery failed or the wait timed out it
  raises :class:`Unavailable` and the relay keeps the whole batch pending. Retrying may
  duplicate messages that did get through; consumers dedupe on ``eventId``.
- **order per key**: the idempotent producer (``enable.idempotence``, at most 5 requests in
  flight) never reorders or duplicates messages of one partition while it lives, and the key
  (``org:connector``) picks the partition.
- **a message refused for good does not block the others**: a message larger than the
  producer or the broker takes (``MSG_SIZE_TOO_LARGE``), or one the broker finds invalid, can
  never be delivered. When every other message of the batch was acknowledged, ``publish``
  raises :class:`EventsRejected` naming those (the relay sets them aside); any other failure
  is :class:`Unavailable` for the whole batch, as before.
- **a fresh producer after every failure**: librdkafka keeps queued messages, producer id,
  sequence numbers and topic metadata across an outage; a broker that lost its state (a
  restart of an in-memory broker, a deleted topic) answers that with fatal ``UNKNOWN_PRODUCER_ID``
  errors or stale partition counts. So a failed publish purges and drops the producer, and the
  next one first makes sure the topics exist (re-creating them), then builds a new producer.
- **the event loop never blocks**: produce, flush and admin calls run on a small private
  thread pool.

No message or log line carries configuration values (SASL passwords live in
``client_config``); librdkafka's own log lines go to the ``adapters.kafka.librdkafka`` logger
at DEBUG, so an outage does not flood the logs (the relay says once that the broker is down).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from typing import Any, TypeVar, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from adapters.event_wire import Profile, kafka_record
from adapters.event_wire import topics as profile_topics
from adapters.kafka.delivery import PENDING, ReportsPool, refused_for_good
from adapters.kafka.errors import beside_invalid, error_code, error_name, is_fatal, is_permanent, kafka_error
from connector_core.errors import EventsRejected, Unavailable
from connector_core.ports.outbox import OutboxMessage, WireRecord, wires_of

__all__ = ["KafkaEventPublisher", "producer_config"]

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("adapters.kafka.librdkafka")

T = TypeVar("T")

#: Keys whose values decide the delivery guarantees; ``client_config`` may not weaken them.
_GUARANTEES = ("enable.idempotence", "acks", "max.in.flight.requests.per.connection", "message.timeout.ms")
_PRODUCER_ONLY = ("linger.ms", "allow.auto.create.topics")
_MAX_IN_FLIGHT = 5  # the most the idempotent producer allows while keeping order
_FLUSH_MARGIN = 2.0  # seconds past message.timeout.ms: every delivery report has come by then


class _DebugLogger:
    """librdkafka's ``logger``: its lines (connection refused every 100 ms while the broker is
    down, ...) are kept at DEBUG; fatal errors reach us through ``error_cb`` instead."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        _rdkafka_log.debug(fmt, *args)


def producer_config(
    bootstrap: str, client_config: Mapping[str, str] | None = None, *, timeout: float = 10.0
) -> dict[str, Any]:
    """The producer settings: ``client_config`` (security, tuning) over our defaults, with the
    delivery guarantees enforced (ValueError names the key, never a value)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "connector-manager",
        "linger.ms": 5,
        # Topics are created by ensure_topics() with our partition count, not by whatever
        # default a broker applies when a producer merely asks for metadata.
        "allow.auto.create.topics": False,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": _MAX_IN_FLIGHT,
        "message.timeout.ms": max(1, int(timeout * 1000)),
    }
    for key, value in (client_config or {}).items():
        if key in _GUARANTEES and not _same_guarantee(key, value, config[key]):
            raise ValueError(f"client_config may not change {key!r}: the relay depends on it")
        config[key] = value  # an equivalent (or, for in-flight requests, stricter) value is fine
    return config


def _same_guarantee(key: str, given: object, ours: object) -> bool:
    text = str(given).strip().lower()
    if key == "enable.idempotence":
        return text == "true"
    if key == "acks":
        return text in ("all", "-1")
    if key == "max.in.flight.requests.per.connection":
        return text.isdigit() and 1 <= int(text) <= _MAX_IN_FLIGHT
    return text == str(ours)


class KafkaEventPublisher:
    """Publishes outbox messages to Kafka. Connections open on first use, not at construction."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_config: Mapping[str, str] | None = None,
        profile: Profile = "none",
        topics: Iterable[str] | None = None,
        timeout: float = 10.0,
        check_timeout: float = 3.0,
        partitions: int = 3,
        replication_factor: int = -1,
        min_insync_replicas: int | None = None,
    ) -> None:
        if timeout <= 0 or check_timeout <= 0:
            raise ValueError("timeouts must be positive")
        #: the wire shapes: ours, or the existing service's consumers' (``compat``)
        self.profile: Profile = profile
        self.topics = tuple(profile_topics(profile) if topics is None else topics)
        self.timeout = timeout
        self.check_timeout = min(check_timeout, timeout)
        self.partitions = partitions
        #: -1: the broker's default (KIP-464)
        self.replication_factor = replication_factor
        #: with ``acks=all``, a write is acknowledged once this many replicas have it (None: the
        #: broker's default); set on the topics this publisher creates
        self.topic_config = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
        self._producer_config = producer_config(bootstrap, client_config, timeout=timeout)
        # The admin client gets the connection and security settings, not the producer ones.
        self._admin_config: dict[str, Any] = {
            k: v for k, v in self._producer_config.items() if k not in _GUARANTEES and k not in _PRODUCER_ONLY
        }
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._clients_lock = threading.Lock()
        self._fatal = threading.Event()
        self._ready_topics: set[str] = set()
        self._publish_lock = asyncio.Lock()
        # Each batch has reports of its own: one cancelled caller's batch may still be in flight
        self._reports = ReportsPool()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kafka-publisher")
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaEventPublisher(topics={self.topics!r})"

    # -- the port ------------------------------------------------------------------------------

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Produce every message, wait for all acknowledgements, or raise :class:`Unavailable`;
        :class:`EventsRejected` when only messages refused for good were not delivered."""
        if not messages:
            return
        # the records the store kept when it wrote the events (a batch's own list, taken as
        # it is when none is missing), or encoded here (once)
        wires = wires_of(messages)
        records: Sequence[WireRecord] = (
            cast("Sequence[WireRecord]", wires)
            if None not in wires
            else [kafka_record(messages[i], self.profile) if w is None else w for i, w in enumerate(wires)]
        )
        async with self._publish_lock:
            needed = set(self.topics).union(map(itemgetter(0), records))
            if not needed <= self._ready_topics:
                await self._ensure(needed)
            try:
                refused = await self._run(self._produce_all, records)
            except Unavailable:
                # Forget the topics too: after an outage they may be gone (or re-created with
                # other partition counts), so the next attempt checks them before producing.
                self._ready_topics.clear()
                await self._run(self._drop_producer)
                raise
        if refused:
            reasons = ", ".join(sorted(set(refused.values())))
            raise EventsRejected(
                f"the event broker refused {len(refused)} of {len(records)} events for good ({reasons})",
                rejected={messages[i].seq: why for i, why in refused.items()},
            )

    async def check(self) -> bool:
        """A metadata request answered by the broker within ``check_timeout``."""
        try:
            await self._run(self._metadata)
        except Unavailable:
            return False
        return True

    # -- administration ------------------------------------------------------------------------

    async def ensure_topics(self) -> None:
        """Create the configured topics that do not exist (safe to race with others)."""
        await self._ensure(set(self.topics))

    async def aclose(self) -> None:
        """Deliver what is queued (up to ``timeout``) and close the clients."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_clients)
        finally:
            self._executor.shutdown(wait=False)

    # -- internals, run on the executor --------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise Unavailable("event publisher is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _ensure(self, topics: set[str]) -> None:
        await self._run(self._ensure_sync, sorted(topics))
        self._ready_topics |= topics

    def _on_error(self, err: Any) -> None:
        # Called by librdkafka from poll()/flush(). Transport errors repeat while the broker is
        # down: keep them at DEBUG. A fatal error makes the producer unusable.
        if is_fatal(err):
            self._fatal.set()
            log.warning("Kafka producer hit a fatal error (%s); it will be replaced", error_name(err))
        else:
            log.debug("Kafka client error: %s", error_name(err))

    @staticmethod
    def _on_admin_error(err: Any) -> None:
        log.debug("Kafka admin client error: %s", error_name(err))

    def _get_producer(self) -> Producer:
        with self._clients_lock:
            if self._producer is None:
                self._fatal.clear()
                self._producer = Producer(
                    {
                        **self._producer_config,
                        "delivery.report.only.error": True,  # see _produce_all
                        "error_cb": self._on_error,
                        "logger": _DebugLogger(),
                    }
                )
            return self._producer

    def _get_admin(self) -> AdminClient:
        with self._clients_lock:
            if self._admin is None:
                config: dict[str, Any] = {
                    **self._admin_config,
                    "error_cb": self._on_admin_error,
                    "logger": _DebugLogger(),
                }
                self._admin = AdminClient(config)
            return self._admin

    def _metadata(self) -> Any:
        try:
            return self._get_admin().list_topics(timeout=self.check_timeout)
        except KafkaException as exc:
            raise Unavailable(f"event broker is unavailable ({error_name(exc)})") from exc

    def _ensure_sync(self, topics: list[str]) -> None:
        metadata = self._metadata()
        missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None]
        if not missing:
            return
        new = [
            NewTopic(
                t, num_partitions=self.partitions, replication_factor=self.replication_factor, config=self.topic_config
            )
            for t in missing
        ]
        try:
            futures = self._get_admin().create_topics(
                new, operation_timeout=self.check_timeout, request_timeout=self.check_timeout
            )
        except KafkaException as exc:
            raise Unavailable(f"cannot create event topics ({error_name(exc)})") from exc
        for topic, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created meanwhile by another process (or auto-created)
                raise Unavailable(f"cannot create event topic {topic} ({error_name(exc)})") from exc
        log.info("created event topics: %s", ", ".join(missing))

    def _produce_all(self, records: Sequence[WireRecord]) -> dict[int, str]:
        """Produce and wait; the messages refused for good (index → error name) when every
        other one was acknowledged, else :class:`Unavailable`.

        The producer reports failed deliveries only (``delivery.report.only.error``): a message
        with no report once ``flush`` says nothing is left in flight was acknowledged, and the
        successful ones cost no Python call each (nor a callback made for each: see
        :mod:`adapters.kafka.delivery`)."""
        producer = self._get_producer()
        reports = self._reports.take()  # this batch's own: see adapters.kafka.delivery
        callbacks = reports.start(len(records))
        outcomes = reports.outcomes  # stays PENDING or None: delivered
        refused: dict[int, str] = {}
        left = len(records)

        try:
            deadline = time.monotonic() + self.timeout + _FLUSH_MARGIN
            try:
                # typed loosely: produce() wants list[tuple[str, str | bytes | None]], ours hold bytes
                produce: Callable[..., None] = producer.produce
                for index, (topic, key, value, headers) in enumerate(records):
                    while True:
                        try:
                            produce(topic, value, key, headers=headers, on_delivery=callbacks[index])
                            break
                        except BufferError:  # local queue full: let deliveries drain it
                            if time.monotonic() > deadline:
                                raise Unavailable("event broker is too slow: the producer queue stays full") from None
                            producer.poll(0.05)
                        except KafkaException as exc:
                            if not is_permanent(exc):
                                raise
                            refused[index] = error_name(exc)  # e.g. larger than message.max.bytes
                            outcomes[index] = None
                            break
                left = producer.flush(max(0.0, deadline - time.monotonic()))
                reported = reports.reported  # none: every message was acknowledged, look at none
                # The broker refuses a whole batch (its size, one of its records) with one code for
                # every message in it: each is sent again alone, and only what is refused alone is
                # refused for good (in order, so a key's events keep theirs).
                for index in (
                    [
                        i
                        for i, o in enumerate(outcomes)
                        if refused_for_good(o) or (o is not PENDING and beside_invalid(o))
                    ]
                    if reported and not left
                    else []
                ):
                    outcomes[index] = PENDING
                    topic, key, value, headers = records[index]
                    try:
                        produce(topic, value, key, headers=headers, on_delivery=callbacks[index])
                    except KafkaException as exc:
                        if not is_permanent(exc):
                            raise
                        outcomes[index] = kafka_error(exc)
                        continue
                    left = producer.flush(max(0.0, deadline - time.monotonic()))
                    if left:
                        break
            except KafkaException as exc:
                raise Unavailable(f"event broker refused the events ({error_name(exc)})") from exc
            failed: list[Any] = []
            for index, outcome in enumerate(outcomes) if reported else ():
                if refused_for_good(outcome):
                    refused[index], outcomes[index] = error_name(outcome), None
                elif outcome is not None and outcome is not PENDING:
                    failed.append(outcome)
            if left or failed or self._fatal.is_set():
                reasons = sorted({error_name(o) for o in failed})
                raise Unavailable(
                    f"event broker did not acknowledge {max(len(failed), left)} of {len(records)} events"
                    + (f" ({', '.join(reasons)})" if reasons else " (timed out)")
                )
            return refused
        finally:
            if not left:  # flush served every report: none can reach ``reports`` any more
                self._reports.give_back(reports)

    def _drop_producer(self) -> None:
        with self._clients_lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            producer.flush(0)  # serve the purged messages' delivery reports
        except (KafkaException, RuntimeError) as exc:
            log.debug("discarding the Kafka producer: %s", error_name(exc))

    def _close_clients(self) -> None:
        with self._clients_lock:
            producer, self._producer = self._producer, None
            self._admin = None
        if producer is not None:
            try:
                producer.flush(self.timeout)
            except KafkaException as exc:
                log.debug("closing the Kafka producer: %s", error_name(exc))
