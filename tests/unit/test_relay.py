"""The outbox relay: nothing lost, order kept, nothing marked before the broker acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from adapters.memory import MemoryEventPublisher, MemoryLeaseLock, MemoryOutboxReader, MemoryStorage
from adapters.system import ManualClock
from connector_core.errors import LeaseLost, Unavailable
from connector_core.model.events import (
    AppDisabled,
    AppEnabled,
    ConnectorConfigured,
    DomainEvent,
    SyncAction,
    TokenEvent,
    TokenEventType,
)
from connector_core.ports.lock import Lease
from connector_core.ports.outbox import OutboxMessage
from connector_core.services.relay import RELAY_LEASE, OutboxRelay, RelayResult
from entrypoints.relay_runner import run_relay


class Env:
    def __init__(self, *, batch_size: int = 100, batches_per_pass: int = 10) -> None:
        self.clock = ManualClock()
        self.storage = MemoryStorage()
        self.reader = MemoryOutboxReader(self.storage)
        self.publisher = MemoryEventPublisher()
        self.lock = MemoryLeaseLock(self.clock)
        self.relay = OutboxRelay(
            self.reader, self.publisher, self.lock, self.clock, batch_size=batch_size, batches_per_pass=batches_per_pass
        )
        self._n = 0

    def event(self, connector: str = "confluence", org: str = "org-1") -> DomainEvent:
        self._n += 1
        now = self.clock.now() + timedelta(milliseconds=self._n)
        common: dict[str, Any] = {
            "event_id": f"ev-{self._n:04d}",
            "occurred_at": now,
            "org_id": org,
            "connector_key": connector,
        }
        if self._n % 3 == 0:
            return TokenEvent(
                **common,
                token_event_type=TokenEventType.REFRESHED,
                token_reference_id="tok-1",
                service_type="CONFLUENCE",
                account_id="acc-1",
            )
        if self._n % 2:
            return AppEnabled(
                **common, app_group="Atlassian", app_group_id="g1", apps=("CONFLUENCE",), sync_action=SyncAction.NONE
            )
        return AppDisabled(**common, app_group="Atlassian", app_group_id="g1", apps=("CONFLUENCE",))

    async def commit(self, events: Sequence[DomainEvent]) -> None:
        async with self.storage.unit_of_work() as uow:
            await uow.outbox.add(events)
            await uow.commit()

    async def commit_events(self, count: int, connectors: Sequence[str] = ("confluence", "jira")) -> list[str]:
        events = [self.event(connectors[i % len(connectors)]) for i in range(count)]
        await self.commit(events)
        return [e.event_id for e in events]

    async def pending_ids(self) -> list[str]:
        return [m.event.event_id for m in await self.reader.pending(10_000)]

    def published_ids(self) -> list[str]:
        return [m.event.event_id for m in self.publisher.published]


def first_occurrences(ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in ids:
        seen.setdefault(i, None)
    return list(seen)


async def test_publishes_pending_in_seq_order_and_marks_them() -> None:
    env = Env()
    ids = await env.commit_events(5)
    assert await env.relay.relay_once() == 5
    assert env.published_ids() == ids
    assert [m.seq for m in env.publisher.published] == sorted(m.seq for m in env.publisher.published)
    assert await env.pending_ids() == []
    assert await env.relay.relay_once() == 0  # nothing left
    assert env.published_ids() == ids


async def test_broker_down_keeps_everything_pending_then_delivers_in_order() -> None:
    env = Env()
    ids = await env.commit_events(4)
    env.publisher.fail = True
    assert await env.relay.relay_once() == 0
    assert await env.relay.relay_batch() == RelayResult(unavailable=True)
    assert await env.pending_ids() == ids
    ids += await env.commit_events(3)  # the application keeps working while the broker is down
    assert await env.pending_ids() == ids
    env.publisher.fail = False
    assert await env.relay.relay_once() == 7
    assert env.published_ids() == ids
    assert await env.pending_ids() == []


def oversized(env: Env, connector: str = "confluence") -> ConnectorConfigured:
    """An event no Kafka producer takes (its record is over 1 MB)."""
    env._n += 1
    return ConnectorConfigured(
        event_id=f"ev-{env._n:04d}",
        occurred_at=env.clock.now(),
        org_id="org-huge",
        connector_key=connector,
        changed_fields=tuple(f"filters.PLANTED-{i:07d}" for i in range(60_000)),
    )


async def test_an_event_refused_for_good_is_set_aside_and_never_blocks_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One org's event that the broker can never take (too large) must not hold up every org's
    events: it is set aside with its reason (logged, counted) and the relay carries on."""
    env = Env()
    before = await env.commit_events(2)
    huge = oversized(env)
    await env.commit([huge])
    after = await env.commit_events(3)
    with caplog.at_level(logging.WARNING, logger="connector_core.services.relay"):
        result = await env.relay.relay_batch()
    assert result == RelayResult(published=5, set_aside=1)
    assert env.published_ids() == before + after
    assert await env.pending_ids() == []
    assert await env.reader.set_aside_count() == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and huge.event_id in warned[0] and "MSG_SIZE_TOO_LARGE" in warned[0]
    assert "PLANTED" not in caplog.text  # the reason and the ids, never the content
    # never offered again: later events flow
    later = await env.commit_events(2)
    assert await env.relay.relay_batch() == RelayResult(published=2)
    assert env.published_ids() == before + after + later
    assert await env.reader.set_aside_count() == 1


async def test_a_batch_of_only_refused_events_moves_on() -> None:
    env = Env()
    await env.commit([oversized(env), oversized(env, "jira")])
    assert await env.relay.relay_batch() == RelayResult(set_aside=2)
    assert await env.pending_ids() == []
    assert await env.relay.relay_batch() == RelayResult()


class PartialPublisher:
    """Hands the first ``deliver`` messages to the broker, then fails (a flush that timed out)."""

    def __init__(self, inner: MemoryEventPublisher, reader: MemoryOutboxReader, deliver: int) -> None:
        self.inner, self.reader, self.deliver = inner, reader, deliver
        self.pending_seen_while_publishing: list[list[int]] = []

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        # While the broker has not acknowledged, the relay must not have marked anything.
        self.pending_seen_while_publishing.append([m.seq for m in await self.reader.pending(10_000)])
        if self.deliver < len(messages):
            await self.inner.publish(messages[: self.deliver])
            raise Unavailable("event broker did not acknowledge every event")
        await self.inner.publish(messages)

    async def check(self) -> bool:
        return True


async def test_nothing_is_marked_until_the_publisher_acknowledged_all() -> None:
    env = Env()
    ids = await env.commit_events(5)
    partial = PartialPublisher(env.publisher, env.reader, deliver=2)
    relay = OutboxRelay(env.reader, partial, env.lock, env.clock)
    assert await relay.relay_once() == 0
    seqs = [m.seq for m in await env.reader.pending(100)]
    assert partial.pending_seen_while_publishing == [seqs]
    assert await env.pending_ids() == ids  # the two that got through are still pending too
    partial.deliver = 100
    assert await relay.relay_once() == 5
    # at least once: duplicates of what got through, but none lost and the order kept
    assert env.published_ids() == ids[:2] + ids
    assert first_occurrences(env.published_ids()) == ids
    assert await env.pending_ids() == []


class FailingMarkReader(MemoryOutboxReader):
    """The store goes away right after the broker acknowledged (a crash at the worst time)."""

    fail_marks = 1

    async def mark_published(self, seqs: Sequence[int]) -> None:
        if self.fail_marks:
            self.fail_marks -= 1
            raise Unavailable("storage is unavailable")
        await super().mark_published(seqs)


async def test_a_failed_mark_republishes_rather_than_loses() -> None:
    env = Env()
    ids = await env.commit_events(3)
    reader = FailingMarkReader(env.storage)
    relay = OutboxRelay(reader, env.publisher, env.lock, env.clock)
    with pytest.raises(Unavailable):
        await relay.relay_once()
    assert await env.pending_ids() == ids
    assert await env.lock.acquire(RELAY_LEASE, 1) is not None  # the lease was released anyway
    env.clock.advance(2)
    assert await relay.relay_once() == 3
    assert env.published_ids() == ids + ids
    assert await env.pending_ids() == []


async def test_a_failed_mark_mid_pass_stops_it_and_republishes_rather_than_loses() -> None:
    env = Env()
    ids = await env.commit_events(6)
    reader = FailingMarkReader(env.storage)
    relay = OutboxRelay(reader, env.publisher, env.lock, env.clock, batch_size=2)
    with pytest.raises(Unavailable):
        await relay.relay_once()
    # the second batch went out while the first was being marked; the failure stopped the pass
    assert env.published_ids() == ids[:4]
    assert await env.pending_ids() == ids  # the second batch is not marked before the first
    assert await env.lock.acquire(RELAY_LEASE, 1) is not None  # the lease was released anyway
    env.clock.advance(2)
    assert await relay.drain() == 6
    assert env.published_ids() == ids[:4] + ids
    assert await env.pending_ids() == []


async def test_batches_follow_seq_order_across_passes() -> None:
    env = Env(batch_size=2, batches_per_pass=1)
    ids = await env.commit_events(5)
    assert await env.relay.relay_batch() == RelayResult(published=2, more=True)
    assert [await env.relay.relay_once() for _ in range(3)] == [2, 1, 0]
    assert env.published_ids() == ids
    more = await env.commit_events(5)
    assert await env.relay.drain() == 5
    assert env.published_ids() == ids + more


class WatchingPublisher:
    """Records, at each batch, what was still pending and which batches were read so far."""

    def __init__(self, inner: MemoryEventPublisher, reader: MemoryOutboxReader, fail_at: int = 0) -> None:
        self.inner, self.reader, self.fail_at = inner, reader, fail_at
        self.batches: list[list[int]] = []
        self.pending_at_publish: list[list[int]] = []

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.batches.append([m.seq for m in messages])
        self.pending_at_publish.append([m.seq for m in await self.reader.pending(10_000)])
        await asyncio.sleep(0)  # the read ahead runs meanwhile
        if len(self.batches) == self.fail_at:
            raise Unavailable("event broker did not acknowledge every event")
        await self.inner.publish(messages)

    async def check(self) -> bool:
        return True


class CountingReader(MemoryOutboxReader):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage)
        self.reads: list[int] = []  # how many each read skipped as ``beyond``

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        self.reads.append(len(beyond))
        return await super().pending(limit, beyond=beyond)


async def test_a_pass_publishes_several_batches_under_one_lease_reading_each_next_one_ahead() -> None:
    env = Env()
    ids = await env.commit_events(7)
    reader = CountingReader(env.storage)
    watching = WatchingPublisher(env.publisher, env.reader)
    relay = OutboxRelay(reader, watching, env.lock, env.clock, batch_size=2, batches_per_pass=3)
    assert await relay.relay_batch() == RelayResult(published=6, more=True)
    assert env.published_ids() == ids[:6]
    seqs = [m.seq for m in env.publisher.published]
    assert watching.batches == [seqs[0:2], seqs[2:4], seqs[4:6]]
    # each batch went out only once the one before was acknowledged, and was pending meanwhile;
    # the one before may still be being marked, none earlier is
    for number, (batch, pending) in enumerate(zip(watching.batches, watching.pending_at_publish, strict=True)):
        before = [s for b in watching.batches[: max(0, number - 1)] for s in b]
        assert set(batch) <= set(pending) and not set(before) & set(pending), number
    # one plain read, then each next batch read beyond the one being published and the one
    # before it (its marking may still be under way); none after the last batch of the pass
    assert reader.reads == [0, 2, 4]
    assert await relay.relay_batch() == RelayResult(published=1)
    assert env.published_ids() == ids
    assert await env.lock.acquire(RELAY_LEASE, 30) is not None  # released after the pass


async def test_a_broker_failure_mid_pass_keeps_the_rest_pending_and_what_went_out_marked() -> None:
    env = Env()
    ids = await env.commit_events(6)
    watching = WatchingPublisher(env.publisher, env.reader, fail_at=2)
    relay = OutboxRelay(env.reader, watching, env.lock, env.clock, batch_size=2)
    assert await relay.relay_batch() == RelayResult(published=2, unavailable=True)
    assert env.published_ids() == ids[:2]
    assert await env.pending_ids() == ids[2:]
    watching.fail_at = 0
    assert await relay.relay_once() == 4
    assert env.published_ids() == ids
    assert await env.pending_ids() == []


async def test_a_pass_starts_no_batch_once_a_third_of_the_lease_is_gone() -> None:
    env = Env()
    ids = await env.commit_events(6)
    slow = SlowPublisher(env.publisher, delay=0.15)
    relay = OutboxRelay(env.reader, slow, env.lock, env.clock, batch_size=2, lease_ttl=0.3)
    # the second batch starts 150 ms in, past a third of the lease (100 ms): no third one read
    assert await relay.relay_batch() == RelayResult(published=4, more=True)
    assert await relay.drain() == 2
    assert env.published_ids() == ids


class ExtendingLock(MemoryLeaseLock):
    """Counts renewals; ``lose`` makes the next renewal find the lease lost."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.extends = 0
        self.lose = False

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        self.extends += 1
        if self.lose:
            raise LeaseLost("the lease lapsed")
        return await super().extend(lease, ttl_seconds)


async def test_a_long_pass_renews_its_lease_and_stops_when_it_was_lost() -> None:
    env = Env()
    ids = await env.commit_events(6)
    lock = ExtendingLock(env.clock)
    slow = SlowPublisher(env.publisher, delay=0.15)
    relay = OutboxRelay(env.reader, slow, lock, env.clock, batch_size=2, lease_ttl=0.3)
    # a third of the lease (100 ms) is gone by the second batch: renewed before it (and no
    # third batch read ahead: the pass has run that long)
    assert await relay.relay_batch() == RelayResult(published=4, more=True)
    assert lock.extends == 1
    assert await relay.drain() == 2
    assert env.published_ids() == ids
    more = await env.commit_events(6)
    lock.lose = True
    assert await relay.relay_batch() == RelayResult(published=2, more=True)  # stopped: not ours any more
    assert env.published_ids() == ids + more[:2]
    assert await env.pending_ids() == more[2:]


async def test_only_the_lease_holder_relays() -> None:
    env = Env()
    await env.commit_events(2)
    other = await env.lock.acquire(RELAY_LEASE, 30)
    assert other is not None
    assert await env.relay.relay_batch() == RelayResult(busy=True)
    assert env.publisher.published == []
    await env.lock.release(other)
    assert await env.relay.relay_once() == 2
    # and our lease is released after every pass, failed or not
    env.publisher.fail = True
    await env.commit_events(1)
    assert await env.relay.relay_once() == 0
    assert await env.lock.acquire(RELAY_LEASE, 30) is not None


class SlowPublisher:
    def __init__(self, inner: MemoryEventPublisher, delay: float = 0.02) -> None:
        self.inner, self.delay = inner, delay
        self.running = 0
        self.max_running = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            await self.inner.publish(messages)
        finally:
            self.running -= 1

    async def check(self) -> bool:
        return True


async def test_concurrent_relays_never_publish_the_same_batch_twice() -> None:
    env = Env(batch_size=3)
    ids = await env.commit_events(10)
    slow = SlowPublisher(env.publisher)
    relays = [OutboxRelay(env.reader, slow, env.lock, env.clock, batch_size=3) for _ in range(4)]
    for _ in range(10):
        await asyncio.gather(*(r.relay_once() for r in relays))
    assert slow.max_running == 1
    assert env.published_ids() == ids  # exactly once, in order


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (polled), failing after a bounded deadline."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


class CountingPublisher(MemoryEventPublisher):
    """Counts every attempt to publish, failed or not."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.attempts += 1
        await super().publish(messages)


async def test_the_relay_loop_rides_out_an_outage_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    env = Env(batch_size=2)
    env.publisher = publisher = CountingPublisher()
    relay = OutboxRelay(env.reader, publisher, env.lock, env.clock, batch_size=2)
    env.publisher.fail = True
    ids = await env.commit_events(5)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="connector_core.services.relay")
    task = asyncio.create_task(run_relay(relay, 0.01, stop, max_backoff=0.04))
    await until(lambda: publisher.attempts >= 3)  # it keeps trying, backing off (0.01, 0.02, 0.04, ...)
    assert publisher.attempts < 30
    assert env.publisher.published == []
    env.clock.advance(5)
    env.publisher.fail = False
    for _ in range(100):
        if not await env.pending_ids():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert env.published_ids() == ids
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "unavailable" in w]) == 1, warnings
    assert len([w for w in warnings if "available again after 5.0s" in w]) == 1, warnings
    assert not any("ev-" in r.getMessage() or "org-1" in r.getMessage() for r in caplog.records)


async def test_the_relay_loop_survives_unexpected_errors_and_stops_promptly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector_core.services.relay")
    env = Env()
    calls = 0

    class Broken:
        async def publish(self, messages: Sequence[OutboxMessage]) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("bug with a secret-looking value sk-123")

        async def check(self) -> bool:
            return False

    await env.commit_events(1)
    relay = OutboxRelay(env.reader, Broken(), env.lock, env.clock)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(relay, 5.0, stop, max_backoff=0.02))
    await until(lambda: calls >= 2)  # a failed pass is tried again (after the backoff, not the interval)
    stop.set()
    await asyncio.wait_for(task, 1)  # the 5 s interval does not delay stopping
    assert len(await env.pending_ids()) == 1
    assert "event relay pass failed: RuntimeError" in caplog.text
    assert "sk-123" not in caplog.text  # messages we cannot vouch for stay out of INFO+ logs


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


class CountingLock(MemoryLeaseLock):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.acquires = 0

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        self.acquires += 1
        return await super().acquire(name, ttl_seconds, wait=wait)


async def test_a_pass_that_finds_the_lease_held_elsewhere_is_no_sign_the_broker_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector_core.services.relay")
    env = Env()
    lock = CountingLock(env.clock)
    relay = OutboxRelay(env.reader, env.publisher, lock, env.clock)
    ids = await env.commit_events(2)
    env.publisher.fail = True
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(relay, 0.01, stop, max_backoff=0.02))
    await until(lambda: any("broker unavailable" in w for w in warnings_of(caplog)))
    other = await lock.acquire(RELAY_LEASE, 3600)  # another process relays now (and fails too)
    assert other is not None
    seen = lock.acquires
    await until(lambda: lock.acquires >= seen + 3)  # passes that found the lease held
    assert not any("available again" in w for w in warnings_of(caplog))
    await lock.release(other)
    env.publisher.fail = False
    await until(lambda: env.published_ids() == ids)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert len([w for w in warnings_of(caplog) if "broker available again" in w]) == 1


class DownReader(MemoryOutboxReader):
    down = True

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        if self.down:
            raise Unavailable("MongoDB is unreachable (AutoReconnect) while trying to read pending events")
        return await super().pending(limit, beyond=beyond)


async def test_a_store_outage_is_reported_as_one_and_not_as_a_broker_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector_core.services.relay")
    env = Env()
    reader = DownReader(env.storage)
    relay = OutboxRelay(reader, env.publisher, env.lock, env.clock)
    ids = await env.commit_events(2)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(relay, 0.01, stop, max_backoff=0.02))
    await until(lambda: any("store unavailable" in w for w in warnings_of(caplog)))
    reader.down = False
    await until(lambda: env.published_ids() == ids)
    stop.set()
    await asyncio.wait_for(task, 1)
    warnings = warnings_of(caplog)
    assert [w for w in warnings if "store" in w] == [
        "event store unavailable; the relay waits for it (the events are kept there)",
        "event store available again after 0.0s",
    ]
    assert not any("broker" in w for w in warnings), warnings


def test_rejects_nonsense_settings() -> None:
    env = Env()
    with pytest.raises(ValueError):
        OutboxRelay(env.reader, env.publisher, env.lock, env.clock, batch_size=0)
    with pytest.raises(ValueError):
        OutboxRelay(env.reader, env.publisher, env.lock, env.clock, lease_ttl=0)
    with pytest.raises(ValueError):
        OutboxRelay(env.reader, env.publisher, env.lock, env.clock, batches_per_pass=0)
