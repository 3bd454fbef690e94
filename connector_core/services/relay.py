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
of each event still comes in order. The lease is kept where the outbox is (the composition root
takes it from the storage backend): a relay needs the store anyway, and an outage of another
lock service must not hold up the events.

A message the broker refuses for good (larger than it takes, invalid: :class:`EventsRejected`)
would otherwise stay the oldest pending one forever and hold up every org's events. It is set
aside instead (:meth:`OutboxReader.set_aside`: kept in the outbox with its reason, counted, never
offered again), logged at WARNING with its event id, type, connector and the reason (never its
content), and the pass carries on with the rest.

Running it: ``entrypoints.relay_runner`` repeats passes, with backoff while the broker or the
store is down, and :class:`RelayOutages` says when either goes and comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from connector_core.errors import ConnectorManagerError, EventsRejected, LeaseLost, Unavailable
from connector_core.ports.clock import Clock
from connector_core.ports.event_publisher import EventPublisher
from connector_core.ports.lock import Lease, LeaseLock
from connector_core.ports.outbox import OutboxBatch, OutboxMessage, OutboxReader, seqs_of

__all__ = ["RELAY_LEASE", "OutboxRelay", "RelayOutages", "RelayResult"]

log = logging.getLogger(__name__)

#: The lease every relay process competes for.
RELAY_LEASE = "outbox-relay"


@frozen
class RelayResult:
    """What one pass did: how many events went out, and why it stopped if it did."""

    published: int = 0
    #: the broker refused or did not acknowledge; the events stay pending
    unavailable: bool = False
    #: the outbox (or the relay's lease) could not be reached
    store_unavailable: bool = False
    #: something unexpected went wrong (logged)
    error: bool = False
    #: another process holds the relay lease
    busy: bool = False
    #: the batch was full: more may be pending right now
    more: bool = False
    #: events the broker refused for good, set aside (not counted in ``published``)
    set_aside: int = 0

    @property
    def failed(self) -> bool:
        return self.unavailable or self.store_unavailable or self.error


class OutboxRelay:
    """Publishes pending outbox messages in lease-guarded passes of batches.

    Batches of 1,000 by default: each pays a read, the wait for the broker's acknowledgement and
    one marking statement, so fewer, larger batches relay more events per second; 1,000 stored
    events stay well under a megabyte in memory. A pass holds the lease for up to
    ``batches_per_pass`` batches (10 by default) and reads the next batch while the broker takes
    the current one (:meth:`OutboxReader.pending` with ``beyond``) and marks the one before
    meanwhile, so the reads and the marking overlap the wait for the acknowledgement. A batch is
    published only once the one before it was acknowledged; its marking waits for that one's. A
    pass reads no further batch once a third of the lease's time is gone, and renews the lease
    before a further batch once a third of it has passed since it was taken or renewed (a slow
    broker), stopping if it was lost: one relay at a time, however long a pass takes."""

    def __init__(
        self,
        reader: OutboxReader,
        publisher: EventPublisher,
        lock: LeaseLock,
        clock: Clock,
        *,
        batch_size: int = 1000,
        lease_ttl: float = 30.0,
        batches_per_pass: int = 10,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        if batches_per_pass < 1:
            raise ValueError("batches_per_pass must be at least 1")
        self.reader = reader
        self.publisher = publisher
        self.lock = lock
        self.clock = clock
        self.batch_size = batch_size
        self.lease_ttl = lease_ttl
        self.batches_per_pass = batches_per_pass

    async def relay_once(self) -> int:
        """Publish one pass of pending events; the number published. 0 when there was
        nothing to do, another process holds the lease, or the broker is unavailable
        (the events then stay pending). Other errors propagate."""
        return (await self.relay_batch()).published

    async def relay_batch(self) -> RelayResult:
        """Like :meth:`relay_once`, saying why it published nothing (or stopped)."""
        lease = await self.lock.acquire(RELAY_LEASE, self.lease_ttl)
        if lease is None:
            return RelayResult(busy=True)
        held = _Held(lease, time.monotonic())
        try:
            return await self._pass(held, time.monotonic() + self.lease_ttl / 3)
        finally:
            try:
                await self.lock.release(held.lease)
            except ConnectorManagerError as exc:
                # The lease expires by itself; the next pass (here or elsewhere) takes it.
                log.debug("could not release the relay lease: %s", type(exc).__name__)

    async def _still_ours(self, held: _Held) -> bool:
        """Before a further batch of the pass: the lease renewed once a third of it is gone
        (a slow broker), False when it was lost meanwhile (the pass must stop)."""
        if time.monotonic() - held.renewed < self.lease_ttl / 3:
            return True
        try:
            held.lease = await self.lock.extend(held.lease, self.lease_ttl)
        except LeaseLost:
            log.warning("the relay lease lapsed during a pass; the pass stops (another relay may go on)")
            return False
        held.renewed = time.monotonic()
        return True

    async def _pass(self, held: _Held, last_start: float) -> RelayResult:
        published = set_aside = 0
        more = unavailable = False
        marking: asyncio.Future[None] | None = None  # the batch before's marking, still under way
        unmarked: Sequence[OutboxMessage] = ()  # its messages
        ahead: asyncio.Future[Sequence[OutboxMessage]] | None = None
        try:
            messages = await self.reader.pending(self.batch_size)
            for number in range(1, self.batches_per_pass + 1):
                if not messages:
                    break
                if number > 1 and not await self._still_ours(held):
                    more = True
                    break
                full = len(messages) >= self.batch_size
                if full and number < self.batches_per_pass and time.monotonic() < last_start:
                    beyond = OutboxBatch.joined(unmarked, messages)
                    ahead = asyncio.ensure_future(self.reader.pending(self.batch_size, beyond=beyond))
                delivered = await self._send(messages)
                if delivered is None:  # the broker is unavailable: these (and the next) stay pending
                    unavailable = True
                    break
                if marking is not None:
                    await marking
                # Only now: the publisher returned, so the broker acknowledged every one of them.
                # If marking fails they are published again later (duplicates, never loss).
                marking, unmarked = asyncio.ensure_future(self.reader.mark_published(delivered)), messages
                published, set_aside = published + len(delivered), set_aside + len(messages) - len(delivered)
                if ahead is None:
                    more = full
                    break
                messages, ahead = await ahead, None
        except BaseException:
            # what the caller hears is this error (or cancellation), not a late one of the
            # read ahead or of the marking: both are waited for and their outcome read
            await _settle(ahead, cancel=True)
            await _settle(marking)
            raise
        await _settle(ahead, cancel=True)
        if marking is not None:
            await marking  # its failure is the pass's (a store outage)
        return RelayResult(published=published, unavailable=unavailable, more=more, set_aside=set_aside)

    async def _send(self, messages: Sequence[OutboxMessage]) -> Sequence[int] | None:
        """Publish one batch; the seqs the broker acknowledged (the others, refused for good, set
        aside), or None when the broker is unavailable."""
        try:
            await self.publisher.publish(messages)
        except Unavailable:
            return None
        except EventsRejected as exc:
            # every other message was acknowledged; these can never be: set them aside
            refused = {seq: exc.rejected[seq] for seq in seqs_of(messages) if seq in exc.rejected}
            await self._set_aside([messages[i] for i, seq in enumerate(seqs_of(messages)) if seq in refused], refused)
            return [seq for seq in seqs_of(messages) if seq not in refused]
        return seqs_of(messages)

    async def _set_aside(self, messages: list[OutboxMessage], reasons: dict[int, str]) -> None:
        await self.reader.set_aside(reasons)
        for m in messages:
            log.warning(
                "event set aside: the broker refused it for good (%s); event_id=%s type=%s key=%s",
                reasons[m.seq],
                m.event.event_id,
                m.event.event_type,
                m.event.partition_key,
            )

    async def relay_pass(self) -> RelayResult:
        """:meth:`relay_batch` for a loop that must never die: a store outage is a result
        (``store_unavailable``), and so is an unexpected error (``error``, logged by class name
        only: its message is not ours to vouch for)."""
        try:
            return await self.relay_batch()
        except Unavailable:
            return RelayResult(store_unavailable=True)
        except Exception as exc:
            log.error("event relay pass failed: %s", type(exc).__name__)
            log.debug("event relay failure detail", exc_info=exc)
            return RelayResult(error=True)

    async def drain(self, *, max_passes: int = 1000) -> int:
        """Publish passes until none is pending (or unavailable/busy); the number published."""
        total = 0
        for _ in range(max_passes):
            result = await self.relay_batch()
            total += result.published
            if not result.more:
                break
        return total


class RelayOutages:
    """Says once when the event broker or the event store (the outbox) goes away, and once when
    it is back, judged only by what a pass proved: the store is back when a pass read the
    outbox, the broker when a pass published. A pass that found the lease held elsewhere, or
    nothing to publish, proves nothing about the broker."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._since: dict[str, datetime] = {}

    def record(self, result: RelayResult) -> None:
        if result.store_unavailable:
            self._down("store", "event store unavailable; the relay waits for it (the events are kept there)")
            return
        if result.error or result.busy:
            return
        self._up("store", "event store available again after %.1fs")  # the outbox was read
        if result.unavailable:
            self._down("broker", "event broker unavailable; events stay in the outbox and are retried")
        elif result.published:
            self._up("broker", "event broker available again after %.1fs; relaying resumed")

    def _down(self, what: str, message: str) -> None:
        if what not in self._since:
            self._since[what] = self._clock.now()
            log.warning(message)

    def _up(self, what: str, message: str) -> None:
        since = self._since.pop(what, None)
        if since is not None:
            log.warning(message, (self._clock.now() - since).total_seconds())


class _Held:
    """The relay's lease during a pass, and when it was last taken or renewed."""

    __slots__ = ("lease", "renewed")

    def __init__(self, lease: Lease, renewed: float) -> None:
        self.lease, self.renewed = lease, renewed


async def _settle(task: asyncio.Future[Any] | None, *, cancel: bool = False) -> None:
    """Wait for ``task`` (cancelled first if ``cancel``: a read ahead whose batch will not be
    published now) and read its outcome, without raising it: the next pass reads again, and
    a failed marking only means the batch is published again."""
    if task is None:
        return
    if cancel:
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.debug("relay step failed while the pass stopped: %s", type(task.exception()).__name__)
