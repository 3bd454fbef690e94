"""Kafka (the session's Tansu broker): the event publisher, and a consumer to read it back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from typing import Any

from attrs import frozen
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from adapters.kafka import KafkaEventPublisher
from connector_core.model.events import ENTITY_TOPIC, TOKEN_TOPIC
from connector_core.ports.event_publisher import EventPublisher
from tests.contract.backends import Env

MARK = "kafka"


@contextlib.asynccontextmanager
async def publisher(env: Env) -> AsyncIterator[EventPublisher]:
    bootstrap = env.request.getfixturevalue("kafka_bootstrap")
    pub = KafkaEventPublisher(bootstrap, timeout=10.0)
    try:
        await pub.ensure_topics()
        yield pub
    finally:
        await pub.aclose()


@frozen
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def event_id(self) -> str:
        return self.headers["eventId"].decode()


def consumer_config(bootstrap: str) -> dict[str, Any]:
    """A consumer for tests: its own group, reading from the start; quick group joins should it
    ever subscribe (Tansu makes a join wait half the session timeout), classic protocol."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "group.protocol": "classic",
        "topic.metadata.refresh.interval.ms": 1000,
    }


def _headers(raw: Mapping[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None) -> dict[str, bytes]:
    """A record's headers as bytes (the client may hand them over as a list or a mapping)."""
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or [])
    return {k: v.encode() if isinstance(v, str) else v for k, v in pairs if v is not None}


def _consume(
    bootstrap: str, topics: list[str], kept: set[str], wanted: set[str], timeout: float, settle: float
) -> list[Received]:
    consumer = Consumer(consumer_config(bootstrap))
    got: list[Received] = []
    try:
        # Assign every partition from the beginning rather than subscribe: no group join to wait
        # for (Tansu holds a join for half the session timeout), and nothing to rebalance.
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics
                if topic in metadata.topics
                for partition in metadata.topics[topic].partitions
            ]
        )
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            seen = {r.event_id for r in got}
            if wanted <= seen:
                # all there; keep reading a little to catch duplicates that follow
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= settle:
                    break
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise AssertionError(f"consumer error: {error}")
            headers = _headers(msg.headers())
            if headers.get("eventId", b"").decode() not in kept:
                continue  # other tests' events on the shared topics
            got.append(
                Received(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), headers)
            )
    finally:
        consumer.close()
    return got


async def read_back(
    bootstrap: str,
    event_ids: Collection[str],
    *,
    topics: Iterable[str] = (ENTITY_TOPIC, TOKEN_TOPIC),
    timeout: float = 20.0,
    settle: float = 0.3,
    expected: Collection[str] | None = None,
) -> list[Received]:
    """Every record on ``topics`` whose ``eventId`` header is one of ``event_ids``, in the order
    consumed (per partition that is the log order), duplicates included. Returns once all of
    ``expected`` (default: all of ``event_ids``) were seen, plus ``settle`` seconds, or after
    ``timeout``: ids that should never arrive may be kept without waiting for them."""
    wanted = set(event_ids if expected is None else expected)
    return await asyncio.to_thread(_consume, bootstrap, list(topics), set(event_ids) | wanted, wanted, timeout, settle)
