"""Moves committed events from the outbox to the broker, in order, without losing any.

The outbox holds every event in the unit of work that caused it, so an event exists exactly
when its state change does. This relay hands pending events to the :class:`EventPublisher` in
``seq`` order and marks them published only after the publisher reports that the broker
acknowledged all of them. Delivery is therefore *at least once*: a crash (or a lost
acknowledgement) between publishing and marking publishes the batch again, and consumers
dedupe on ``eventId``. Nothing is ever marked published that the broker did not take.

Ordering: one relay at a time, across every process sharing the store, holds the lease
``outbox-relay``; two relays would interleave batches and reorder one connector's events.
If the lease expires while a slow publish is in flight, a second relay may publish the same
messages again; both walk the outbox from its oldest pending message, so the first occurrence
of each event still comes in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from attrs import frozen

from connector_core.errors import ConnectorManagerError, Unavailable
from connector_core.ports.clock import Clock
from connector_core.ports.event_publisher import EventPublisher
from connector_core.ports.lock import LeaseLock
from connector_core.ports.outbox import OutboxReader

__all__ = ["RELAY_LEASE", "OutboxRelay", "RelayResult"]

log = logging.getLogger(__name__)

#: The lease every relay process competes for.
RELAY_LEASE = "outbox-relay"


@frozen
class RelayResult:
    """What one pass did: how many events went out, and why it stopped if it did."""

    published: int = 0
    #: the broker (or the store) refused; the events stay pending
    unavailable: bool = False
    #: another process holds the relay lease
    busy: bool = False
    #: the batch was full: more may be pending right now
    more: bool = False


class OutboxRelay:
    """Publishes pending outbox messages, one lease-guarded batch at a time."""

    def __init__(
        self,
        reader: OutboxReader,
        publisher: EventPublisher,
        lock: LeaseLock,
        clock: Clock,
        *,
        batch_size: int = 100,
        lease_ttl: float = 30.0,
        max_backoff: float = 10.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self.reader = reader
        self.publisher = publisher
        self.lock = lock
        self.clock = clock
        self.batch_size = batch_size
        self.lease_ttl = lease_ttl
        self.max_backoff = max_backoff

    async def relay_once(self) -> int:
        """Publish one batch of pending events; the number published. 0 when there was
        nothing to do, another process holds the lease, or the broker is unavailable
        (the events then stay pending). Other errors propagate."""
        return (await self.relay_batch()).published

    async def relay_batch(self) -> RelayResult:
        """Like :meth:`relay_once`, saying why it published nothing."""
        lease = await self.lock.acquire(RELAY_LEASE, self.lease_ttl)
        if lease is None:
            return RelayResult(busy=True)
        try:
            messages = await self.reader.pending(self.batch_size)
            if not messages:
                return RelayResult()
            try:
                await self.publisher.publish(messages)
            except Unavailable:
                return RelayResult(unavailable=True)
            # Only now: the publisher returned, so the broker acknowledged every message.
            # If marking fails the batch is published again later (duplicates, never loss).
            await self.reader.mark_published([m.seq for m in messages])
            return RelayResult(published=len(messages), more=len(messages) >= self.batch_size)
        finally:
            try:
                await self.lock.release(lease)
            except ConnectorManagerError as exc:
                # The lease expires by itself; the next pass (here or elsewhere) takes it.
                log.debug("could not release the relay lease: %s", type(exc).__name__)

    async def drain(self, *, max_batches: int = 1000) -> int:
        """Publish batches until none is pending (or unavailable/busy); the number published."""
        total = 0
        for _ in range(max_batches):
            result = await self.relay_batch()
            total += result.published
            if not result.more:
                break
        return total

    async def run_forever(self, interval: float, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set: a full batch is followed at once by the next, an idle
        pass waits ``interval``; while the broker (or the store) is down the wait doubles up to
        ``max_backoff``. One warning when an outage starts, one line when it ends."""
        failures = 0
        outage_since: datetime | None = None
        while not stop.is_set():
            try:
                result = await self.relay_batch()
            except Unavailable:
                result = RelayResult(unavailable=True)
            except Exception as exc:
                # A bug or an unexpected driver error: keep the loop alive and back off. The
                # message is logged at debug only (it is not ours to vouch for).
                log.error("event relay pass failed: %s", type(exc).__name__)
                log.debug("event relay failure detail", exc_info=exc)
                result = RelayResult(unavailable=True)
            if result.unavailable:
                failures += 1
                if outage_since is None:
                    outage_since = self.clock.now()
                    log.warning("event broker unavailable; events stay in the outbox and are retried")
                delay = min(self.max_backoff, max(interval, 0.05) * 2 ** min(failures - 1, 16))
            else:
                if outage_since is not None:
                    down_for = (self.clock.now() - outage_since).total_seconds()
                    log.warning("event broker available again after %.1fs; relaying resumed", down_for)
                    outage_since = None
                failures = 0
                if result.more:
                    await asyncio.sleep(0)  # let others run, then go on draining
                    continue
                delay = interval
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
