"""A publish whose caller is cancelled (the reload's grace ran out, shutdown) releases the
publisher's asyncio lock while its executor thread goes on producing and flushing. The delivery
reports of that batch that arrive later must land on that batch, never on the message with the
same index of the batch published next."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from adapters.kafka import KafkaEventPublisher
from connector_core.errors import EventsRejected, Unavailable

Report = Callable[[Any, Any], None]


class SlowFirstFlushProducer:
    """A fake librdkafka: failures are reported (``delivery.report.only.error``) by whichever
    thread flushes or polls. The first flush (batch 1's) hangs until released, and the broker
    answers batch 1's messages only during the second flush of another batch."""

    def __init__(self, plan: dict[bytes, list[KafkaError]]) -> None:
        self.plan = plan  # value -> the errors of its successive sends (none left: acknowledged)
        self.lock = threading.Lock()
        self.queue: list[tuple[Report, KafkaError]] = []  # reports not served yet
        self.late: list[tuple[Report, KafkaError]] = []  # batch 1's, answered late
        self.first_flush_waiting = threading.Event()
        self.release_first_flush = threading.Event()
        self.flushes = 0

    def produce(self, topic: str, value: bytes, key: bytes, *, headers: Any, on_delivery: Report) -> None:
        errors = self.plan.get(value, [])
        err = errors.pop(0) if errors else None
        if err is not None:
            with self.lock:
                (self.late if value.startswith(b"b1-") else self.queue).append((on_delivery, err))

    def flush(self, timeout: float) -> int:
        with self.lock:
            self.flushes += 1
            flush = self.flushes
            if flush == 3:  # batch 2's second flush (its message sent again alone)
                self.queue += self.late
                self.late.clear()
        if flush == 1:
            self.first_flush_waiting.set()
            self.release_first_flush.wait(10)
            return 0
        self.poll(0)
        return 0

    def poll(self, timeout: float) -> int:
        with self.lock:
            todo, self.queue = self.queue, []
        for report, err in todo:
            report(err, None)
        return len(todo)

    def purge(self, **kwargs: Any) -> None:
        pass


class Message:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.wire = None  # no record kept: encoded when published (kafka_record, replaced below)


async def test_a_cancelled_batchs_late_report_does_not_land_on_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # batch 1: its message 0 is refused by the broker, but only after batch 2 began.
    # batch 2: message 0 times out (transient), message 1 is invalid, even alone.
    producer = SlowFirstFlushProducer(
        {
            b"b1-0": [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)],
            b"b2-0": [KafkaError(KafkaError._MSG_TIMED_OUT)],
            b"b2-1": [KafkaError(KafkaError.INVALID_RECORD), KafkaError(KafkaError.INVALID_RECORD)],
        }
    )
    publisher = KafkaEventPublisher("127.0.0.1:1", topics=["t"], timeout=1.0)
    monkeypatch.setattr(publisher, "_get_producer", lambda: producer)
    publisher._ready_topics = {"t"}
    values = {10: b"b1-0", 11: b"b1-1", 20: b"b2-0", 21: b"b2-1", 22: b"b2-2"}
    monkeypatch.setattr(
        "adapters.kafka.publisher.kafka_record", lambda message, profile: ("t", b"k", values[message.seq], {})
    )
    loop = asyncio.get_running_loop()
    try:
        batch1 = asyncio.create_task(publisher.publish([Message(10), Message(11)]))  # type: ignore[list-item]
        assert await loop.run_in_executor(None, producer.first_flush_waiting.wait, 5)
        batch1.cancel()  # its executor thread goes on flushing
        with pytest.raises(asyncio.CancelledError):
            await batch1
        # Message 20 was never delivered and may be retried: the whole batch stays pending.
        # (Before the fix, batch 1's late MSG_SIZE_TOO_LARGE landed on message 20, which was
        # then set aside for good as EventsRejected.)
        with pytest.raises(Unavailable, match="_MSG_TIMED_OUT"):
            await publisher.publish([Message(20), Message(21), Message(22)])  # type: ignore[list-item]
    except EventsRejected as exc:
        pytest.fail(f"batch 2 had events set aside: {sorted(exc.rejected)}; seq 20 was never delivered")
    finally:
        producer.release_first_flush.set()
        await loop.run_in_executor(None, publisher._executor.shutdown, True)


def test_a_settled_batchs_callbacks_are_reused_by_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = SlowFirstFlushProducer({})
    producer.flushes = 1  # no flush hangs
    publisher = KafkaEventPublisher("127.0.0.1:1", topics=["t"], timeout=1.0)
    monkeypatch.setattr(publisher, "_get_producer", lambda: producer)
    callbacks: list[Report] = []
    real_produce = producer.produce

    def produce(topic: str, value: bytes, key: bytes, *, headers: Any, on_delivery: Report) -> None:
        callbacks.append(on_delivery)
        real_produce(topic, value, key, headers=headers, on_delivery=on_delivery)

    monkeypatch.setattr(producer, "produce", produce)
    for _ in range(2):
        assert publisher._produce_all([("t", b"k", b"v", {})]) == {}
    assert callbacks[0] is callbacks[1]  # no callback made per message while nothing is late
    publisher._executor.shutdown()
