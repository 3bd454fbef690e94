"""What the Kafka publisher calls refused for good: a broker that refuses a whole batch (its
size, one record of it) reports the same error for every message in it; only a message that is
refused when sent alone is set aside, the others are delivered, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from adapters.kafka import KafkaEventPublisher
from connector_core.errors import Unavailable
from connector_core.ports.outbox import WireRecord

LIMIT = 100  # bytes the fake broker takes in one batch


class BatchLimitedProducer:
    """Queues what is produced; at ``flush``, a batch over LIMIT bytes is refused as a whole
    (MSG_SIZE_TOO_LARGE for each message), as a broker with a small max.message.bytes does.
    Reports failures only (``delivery.report.only.error``)."""

    def __init__(self, transient: bool = False) -> None:
        self.queue: list[tuple[bytes, Callable[[Any, Any], None]]] = []
        self.delivered: list[bytes] = []
        self.transient = transient

    def produce(self, topic: str, value: bytes, key: bytes, *, headers: Any, on_delivery: Any) -> None:
        self.queue.append((value, on_delivery))

    def flush(self, timeout: float) -> int:
        batch, self.queue = self.queue, []
        if sum(len(v) for v, _ in batch) > LIMIT:
            code = KafkaError._MSG_TIMED_OUT if self.transient else KafkaError.MSG_SIZE_TOO_LARGE
            for _, report in batch:
                report(KafkaError(code), None)
        else:
            self.delivered += [v for v, _ in batch]
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def publisher_with(producer: BatchLimitedProducer, monkeypatch: pytest.MonkeyPatch) -> KafkaEventPublisher:
    publisher = KafkaEventPublisher("127.0.0.1:1", timeout=1.0)
    monkeypatch.setattr(publisher, "_get_producer", lambda: producer)
    return publisher


def record(value: bytes) -> WireRecord:
    return ("entity-events", b"org:confluence", value, {})


def test_a_batch_refused_as_a_whole_is_sent_again_message_by_message(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = BatchLimitedProducer()
    publisher = publisher_with(producer, monkeypatch)
    values = [b"a" * 40, b"b" * 40, b"c" * 150, b"d" * 40]  # 270 bytes: the batch is refused
    refused = publisher._produce_all([record(v) for v in values])
    assert refused == {2: "MSG_SIZE_TOO_LARGE"}  # too large alone: that one only
    assert producer.delivered == [values[0], values[1], values[3]]  # the others, in order


class OneInvalidRecordProducer(BatchLimitedProducer):
    """A broker that refuses one record of a batch (KIP-467): INVALID_RECORD for it, and
    _INVALID_DIFFERENT_RECORD for every other record of that batch."""

    def flush(self, timeout: float) -> int:
        batch, self.queue = self.queue, []
        if any(v.startswith(b"bad") for v, _ in batch):
            for value, report in batch:
                bad = value.startswith(b"bad")
                report(KafkaError(KafkaError.INVALID_RECORD if bad else KafkaError._INVALID_DIFFERENT_RECORD), None)
        else:
            self.delivered += [v for v, _ in batch]
        return 0


def test_one_invalid_record_is_set_aside_and_the_rest_of_its_batch_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = OneInvalidRecordProducer()
    publisher = publisher_with(producer, monkeypatch)
    values = [b"one", b"bad record", b"three"]
    assert publisher._produce_all([record(v) for v in values]) == {1: "INVALID_RECORD"}
    assert producer.delivered == [b"one", b"three"]


def test_a_transient_refusal_of_the_batch_sets_nothing_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = publisher_with(BatchLimitedProducer(transient=True), monkeypatch)
    with pytest.raises(Unavailable):
        publisher._produce_all([record(b"x" * 80), record(b"y" * 80)])
