"""Event publisher port: hands outbox messages to the broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from connector_core.ports.outbox import OutboxMessage


class EventPublisher(Protocol):
    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Deliver every message in order (at least once) or raise :class:`Unavailable`;
        return only when the broker acknowledged all of them. A message the broker refuses for
        good (too large, invalid) does not hold up the others: when every other message was
        acknowledged, raise :class:`EventsRejected` naming the refused ones and why."""
        ...

    async def check(self) -> bool:
        """A real round trip to the broker: True when it answers."""
        ...
