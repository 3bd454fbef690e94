"""Publisher that keeps what it was given in memory (embedded default and tests)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from connector_core.errors import Unavailable
from connector_core.ports.outbox import OutboxMessage


class MemoryEventPublisher:
    """Records published messages in order. ``fail`` simulates a broker that is down."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self.published: list[OutboxMessage] = []
        self.fail = False
        self._keep = keep

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        if self.fail:
            raise Unavailable("event broker is unavailable")
        with self._lock:
            self.published.extend(messages)
            del self.published[: max(0, len(self.published) - self._keep)]

    async def check(self) -> bool:
        return not self.fail
