"""The delivery reports of the batch a Kafka producer is sending, kept by the message's index.

The producer reports failed deliveries only (``delivery.report.only.error``): a message with no
report once ``flush`` says nothing is left in flight was acknowledged. Each produced message
still takes a callback that knows its index. Made per message (a closure each), they cost about
as much Python time as producing the batch itself; so the callbacks are made once per index and
reused by every batch, each writing into the outcomes of the batch now being sent. One batch at
a time: the publisher produces under its lock, a batch is done only when ``flush`` has served
every report, and a producer whose batch failed is purged and dropped, so no report of an
earlier batch can arrive during a later one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adapters.kafka.errors import is_permanent

__all__ = ["PENDING", "DeliveryReports", "refused_for_good"]

OnDelivery = Callable[[Any, Any], None]


class _Pending:
    """No delivery report yet."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()


def refused_for_good(outcome: Any) -> bool:
    """A delivery report's error that sending the message again cannot cure."""
    return outcome is not None and outcome is not PENDING and is_permanent(outcome)


class DeliveryReports:
    """The outcome of each message of the batch in flight: :data:`PENDING`, None (delivered, or
    settled otherwise) or the error its report carried."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []
        self._callbacks: list[OnDelivery] = []

    def start(self, count: int) -> Sequence[OnDelivery]:
        """A new batch of ``count`` messages, all :data:`PENDING`; the callback of each, by index."""
        self.outcomes = [PENDING] * count
        while len(self._callbacks) < count:
            self._callbacks.append(self._callback(len(self._callbacks)))
        return self._callbacks

    def _callback(self, index: int) -> OnDelivery:
        def on_delivery(err: Any, _msg: Any) -> None:
            # Touch only ``err``: after a fatal error the message object may be unusable.
            self.outcomes[index] = err

        return on_delivery
