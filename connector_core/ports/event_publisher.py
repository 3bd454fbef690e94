"""Event publisher port: hands outbox messages to the broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from connector_core.ports.outbox import OutboxMessage


class EventPublisher(Protocol):
    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Deliver every message in order (at least once) or raise :class:`Unavailable`;
        return only when the broker acknowledged all of them."""
        ...

    async def check(self) -> bool:
        """A real round trip to the broker: True when it answers."""
        ...
