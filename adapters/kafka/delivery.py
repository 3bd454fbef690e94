"""The delivery reports of the batch a Kafka producer is sending, kept by the message's index.

The producer reports failed deliveries only (``delivery.report.only.error``): a message with no
report once ``flush`` says nothing is left in flight was acknowledged. Each produced message
still takes a callback that knows its index. Made per message (a closure each), they cost about
as much Python time as producing the batch itself; so the callbacks are made once per index of a
:class:`DeliveryReports` and reused by the batches that take it, each writing into the outcomes
of the batch that holds it.

A batch takes a :class:`DeliveryReports` of its own from a :class:`ReportsPool` and gives it back
only once no report of its messages can come any more (its ``flush`` found nothing in flight).
A batch whose caller went away (a cancelled publish: its executor thread goes on producing and
flushing) or that ended with messages still in flight keeps its reports object to itself: a
later batch takes another, so a late report lands in the outcomes of the batch it belongs to,
never on a later batch's message of the same index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from adapters.kafka.errors import is_permanent

__all__ = ["PENDING", "DeliveryReports", "ReportsPool", "refused_for_good"]

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
        #: how many reports came for the batch (0: every message that was produced and is no
        #: longer in flight was acknowledged, known without looking at each outcome)
        self.reported = 0
        self._callbacks: list[OnDelivery] = []

    def start(self, count: int) -> Sequence[OnDelivery]:
        """A new batch of ``count`` messages, all :data:`PENDING`; the callback of each, by index."""
        self.outcomes = [PENDING] * count
        self.reported = 0
        while len(self._callbacks) < count:
            self._callbacks.append(self._callback(len(self._callbacks)))
        return self._callbacks

    def _callback(self, index: int) -> OnDelivery:
        def on_delivery(err: Any, _msg: Any) -> None:
            # Touch only ``err``: after a fatal error the message object may be unusable.
            self.outcomes[index] = err
            self.reported += 1

        return on_delivery


class ReportsPool:
    """The :class:`DeliveryReports` no report can reach any more, for the next batches to take
    (thread-safe: batches of cancelled callers may still run on other executor threads)."""

    def __init__(self) -> None:
        self._free: list[DeliveryReports] = []
        self._lock = threading.Lock()

    def take(self) -> DeliveryReports:
        """Reports no other batch holds: a settled one, or a new one."""
        with self._lock:
            return self._free.pop() if self._free else DeliveryReports()

    def give_back(self, reports: DeliveryReports) -> None:
        """Only once every report of the batch that held ``reports`` has been served."""
        with self._lock:
            self._free.append(reports)
