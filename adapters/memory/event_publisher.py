"""Publisher that keeps what it was given in memory (embedded default and tests)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from adapters.event_wire import kafka_record
from connector_core.errors import EventsRejected, Unavailable
from connector_core.ports.outbox import OutboxMessage

#: what a Kafka producer takes by default (librdkafka's ``message.max.bytes``)
KAFKA_MESSAGE_MAX_BYTES = 1_000_000


class MemoryEventPublisher:
    """Records published messages in order. ``fail`` simulates a broker that is down; a message
    larger than ``max_message_bytes`` (as a Kafka record: key, value and headers) is refused for
    good, as Kafka refuses it (:class:`EventsRejected`, the others kept)."""

    def __init__(self, keep: int = 10_000, *, max_message_bytes: int = KAFKA_MESSAGE_MAX_BYTES) -> None:
        self._lock = threading.Lock()
        self.published: list[OutboxMessage] = []
        self.fail = False
        self.max_message_bytes = max_message_bytes
        self._keep = keep

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        if self.fail:
            raise Unavailable("event broker is unavailable")
        refused = {m.seq: "MSG_SIZE_TOO_LARGE" for m in messages if _size(m) > self.max_message_bytes}
        with self._lock:
            self.published.extend(m for m in messages if m.seq not in refused)
            del self.published[: max(0, len(self.published) - self._keep)]
        if refused:
            raise EventsRejected(f"the event broker refused {len(refused)} events for good", rejected=refused)

    async def check(self) -> bool:
        return not self.fail


def _size(message: OutboxMessage) -> int:
    _, key, value, headers = kafka_record(message)
    return len(key) + len(value) + sum(len(k) + len(v) for k, v in headers.items())
