"""The outbox relay from a SQLite outbox to the session's Kafka broker (Tansu), including a
broker outage: nothing committed meanwhile is lost, and each connector's events keep their order.

Tansu keeps its data in memory: a restarted broker has no topics and knows no producer ids, so
these tests also show that the publisher re-creates its topics and replaces its producer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from attrs import define

from adapters.crypto import Aead, Keyring
from adapters.kafka import KafkaEventPublisher, producer_config
from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteOutboxReader, SQLiteUnitOfWork
from adapters.system import SecureIds, SystemClock
from connector_core.catalog import Catalog
from connector_core.model.connector import Connector
from connector_core.model.events import SyncAction
from connector_core.ports.outbox import OutboxMessage
from connector_core.services.relay import OutboxRelay
from entrypoints.relay_runner import run_relay
from tests.builders import api_token_connector
from tests.contract.backends.kafka import Received, read_back
from tests.servers import free_port

pytestmark = pytest.mark.kafka

CONNECTORS = ("confluence", "jira")


@define
class World:
    """A SQLite store with connectors of one fresh org, and a relay to Kafka."""

    db: SQLiteDatabase
    reader: SQLiteOutboxReader
    relay: OutboxRelay
    publisher: KafkaEventPublisher
    catalog: Catalog
    org: str
    connectors: dict[str, Connector]
    ids: SecureIds
    clock: SystemClock

    async def commit_toggles(self, rounds: int) -> int:
        """Enable/disable every connector ``rounds`` times, one unit of work per change, with a
        filter change in every other round; the number of events committed."""
        committed = 0
        for i in range(rounds):
            for key in CONNECTORS:
                c = self.connectors[key]
                now = self.clock.now()
                c.toggle(self.catalog.get(key), by="admin", now=now, ids=self.ids, sync_action=SyncAction.NONE)
                if i % 2:
                    c.save_filters({"spaces": [uuid.uuid4().hex[:6]]}, by="admin", now=now, ids=self.ids)
                events = c.pull_events()
                async with SQLiteUnitOfWork(self.db) as uow:
                    await uow.connectors.save(c)
                    await uow.outbox.add(events)
                    await uow.commit()
                committed += len(events)
        return committed

    async def outbox(self) -> list[OutboxMessage]:
        return [m for m in await self.reader.recent(10_000) if m.event.org_id == self.org]

    async def pending(self) -> list[OutboxMessage]:
        return [m for m in await self.reader.pending(10_000) if m.event.org_id == self.org]


@pytest.fixture
async def world(tmp_path: Path, catalog: Catalog, kafka_bootstrap: str) -> AsyncIterator[World]:
    db = SQLiteDatabase(tmp_path / "outbox.db", sealer=Aead(Keyring.generate()))
    clock = SystemClock()
    # short timeouts keep the outage test quick; a deployment keeps the 10 s default
    publisher = KafkaEventPublisher(kafka_bootstrap, timeout=3.0, check_timeout=1.0)
    reader = SQLiteOutboxReader(db)
    relay = OutboxRelay(reader, publisher, SQLiteLeaseLock(db, clock), clock, batch_size=7)
    org = f"org-{uuid.uuid4().hex[:10]}"
    ids = SecureIds()
    connectors = {}
    for key in CONNECTORS:
        c = api_token_connector(catalog, org, clock.now(), ids=ids, key=key)
        async with SQLiteUnitOfWork(db) as uow:
            await uow.connectors.add(c)
            await uow.commit()
        async with SQLiteUnitOfWork(db) as uow:  # reload: the stored version
            loaded = await uow.connectors.get(org, key)
            assert loaded is not None
            connectors[key] = loaded
    try:
        await publisher.ensure_topics()
        yield World(db, reader, relay, publisher, catalog, org, connectors, ids, clock)
    finally:
        await publisher.aclose()
        await db.aclose()


def streams(messages: Sequence[OutboxMessage]) -> dict[tuple[str, bytes], list[str]]:
    """Outbox order of event ids per (topic, key): the order consumers must see."""
    out: dict[tuple[str, bytes], list[str]] = {}
    for m in messages:
        out.setdefault((m.event.topic, m.event.partition_key.encode()), []).append(m.event.event_id)
    return out


def first_occurrences(records: Sequence[Received]) -> dict[tuple[str, bytes], list[str]]:
    out: dict[tuple[str, bytes], list[str]] = {}
    for r in records:
        ids = out.setdefault((r.topic, r.key or b""), [])
        if r.event_id not in ids:
            ids.append(r.event_id)
    return out


async def relay_until_drained(world: World, timeout: float) -> float:
    """Run passes (as the worker loop would) until this org has nothing pending; seconds taken."""
    start = time.monotonic()
    while await world.pending():
        assert time.monotonic() - start < timeout, "the relay did not drain the outbox in time"
        if await world.relay.relay_once() == 0:
            await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_relay_drains_a_sqlite_outbox_to_kafka_in_order(world: World, kafka_bootstrap: str) -> None:
    await world.commit_toggles(6)
    outbox = await world.outbox()
    assert len(outbox) == 18  # 12 toggles + 6 filter changes

    published = await world.relay.drain()
    assert published == len(outbox)
    assert await world.pending() == []

    got = await read_back(kafka_bootstrap, [m.event.event_id for m in outbox])
    assert Counter(r.event_id for r in got) == Counter({m.event.event_id: 1 for m in outbox})  # exactly once
    assert first_occurrences(got) == streams(outbox)
    assert {r.key for r in got} == {f"{world.org}:{key}".encode() for key in CONNECTORS}
    assert await world.publisher.check() is True


async def test_broker_outage_loses_nothing_and_keeps_order(
    world: World, kafka_server: Any, kafka_bootstrap: str, record_property: Any
) -> None:
    await world.commit_toggles(2)
    assert await world.relay.drain() == 6
    before = {m.event.event_id for m in await world.outbox()}  # gone with the broker's memory

    kafka_server.stop()
    try:
        started = time.monotonic()
        assert await world.publisher.check() is False
        check_seconds = time.monotonic() - started
        assert check_seconds < 5

        await world.commit_toggles(4)  # the application keeps working while the broker is down
        during = await world.pending()
        assert len(during) == 12

        started = time.monotonic()
        assert await world.relay.relay_once() == 0  # a producer that was up: waits its 3 s timeout
        assert await world.relay.relay_once() == 0  # then a quick metadata check fails first
        down_seconds = time.monotonic() - started
        assert [m.seq for m in await world.pending()] == [m.seq for m in during]  # nothing marked
    finally:
        kafka_server.start()

    await world.commit_toggles(2)  # and after it is back
    recovery_seconds = await relay_until_drained(world, timeout=30)
    assert await world.publisher.check() is True

    expected = [m for m in await world.outbox() if m.event.event_id not in before]
    assert len(expected) == 18
    got = await read_back(kafka_bootstrap, [m.event.event_id for m in expected])
    counts = Counter(r.event_id for r in got)
    assert set(counts) == {m.event.event_id for m in expected}, "an event was lost"
    assert first_occurrences(got) == streams(expected), "a connector's events came out of order"
    duplicates = sum(counts.values()) - len(counts)
    record_property("duplicates", duplicates)
    # nothing was delivered while the broker was down, so nothing may arrive twice
    assert duplicates == 0, f"{duplicates} events arrived more than once"
    record_property(
        "timings", f"check={check_seconds:.2f}s down-passes={down_seconds:.2f}s recovery={recovery_seconds:.2f}s"
    )
    print(
        f"\nbroker outage: {len(expected)} events, {duplicates} duplicates; check()->False in {check_seconds:.2f}s, "
        f"2 failed passes {down_seconds:.2f}s, recovery {recovery_seconds:.2f}s"
    )


def crash(server: Any) -> None:
    """Kill the broker outright (a crash, not a shutdown: no connection is closed politely)."""
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    server.stop()  # nothing left to stop; keeps the fixture's bookkeeping right


async def test_the_worker_loop_rides_out_a_broker_crash(world: World, kafka_server: Any, kafka_bootstrap: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(world.relay, 0.05, stop, max_backoff=0.5))
    try:
        await world.commit_toggles(1)
        while await world.pending():
            await asyncio.sleep(0.05)
        before = {m.event.event_id for m in await world.outbox()}  # gone with the broker's memory
        crash(kafka_server)
        try:
            assert await world.commit_toggles(3) == 8
            await asyncio.sleep(1.0)
            assert len(await world.pending()) == 8
        finally:
            kafka_server.start()
        await world.commit_toggles(1)
        deadline = time.monotonic() + 30
        while await world.pending():
            assert time.monotonic() < deadline, "the worker loop did not catch up after the outage"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    expected = [m for m in await world.outbox() if m.event.event_id not in before]
    assert len(expected) == 10
    got = await read_back(kafka_bootstrap, [m.event.event_id for m in expected])
    assert {r.event_id for r in got} == {m.event.event_id for m in expected}
    assert first_occurrences(got) == streams(expected)


async def test_a_broker_restart_between_passes_is_survived(
    world: World, kafka_server: Any, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer does not notice the restart until it produces: the new broker knows neither
    its producer id nor the topics (a fatal error for an idempotent producer)."""
    await world.commit_toggles(1)
    assert await world.relay.drain() == 2
    before = {m.event.event_id for m in await world.outbox()}
    try:
        crash(kafka_server)
    finally:
        kafka_server.start()
    assert await world.commit_toggles(2) == 6
    seconds = await relay_until_drained(world, timeout=30)
    expected = [m for m in await world.outbox() if m.event.event_id not in before]
    got = await read_back(kafka_bootstrap, [m.event.event_id for m in expected])
    assert {r.event_id for r in got} == {m.event.event_id for m in expected}
    assert first_occurrences(got) == streams(expected)
    print(f"\nrestart between passes: recovered in {seconds:.2f}s, {len(got) - len(expected)} duplicates")
    assert "Authorization" not in caplog.text


def test_client_config_cannot_weaken_the_delivery_guarantees() -> None:
    config = producer_config("127.0.0.1:1", {"security.protocol": "SASL_SSL", "sasl.password": "pw-secret"}, timeout=4)
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["max.in.flight.requests.per.connection"] <= 5
    assert config["message.timeout.ms"] == 4000
    assert config["security.protocol"] == "SASL_SSL"
    stricter = producer_config("h:1", {"acks": "-1", "max.in.flight.requests.per.connection": "1"})
    assert (stricter["acks"], stricter["max.in.flight.requests.per.connection"]) == ("-1", "1")
    for key, value in [
        ("enable.idempotence", "false"),
        ("acks", "1"),
        ("max.in.flight.requests.per.connection", "6"),
        ("message.timeout.ms", "300000"),
    ]:
        with pytest.raises(ValueError) as info:
            producer_config("h:1", {key: value, "sasl.password": "pw-secret"})
        assert key in str(info.value) and "pw-secret" not in str(info.value)
    assert "pw-secret" not in repr(KafkaEventPublisher("h:1", client_config={"sasl.password": "pw-secret"}))


async def test_a_bootstrap_list_whose_first_broker_is_gone_still_reaches_the_cluster(
    world: World, kafka_bootstrap: str
) -> None:
    """Several brokers: any one that answers bootstraps the publisher (Tansu here runs one broker
    per storage: the list's other entries are ports where nothing listens, as after a broker died)."""
    gone = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    publisher = KafkaEventPublisher(
        ",".join([gone[0], kafka_bootstrap, gone[1]]), timeout=3.0, check_timeout=2.0, min_insync_replicas=1
    )
    assert publisher.topic_config == {"min.insync.replicas": "1"}
    world.relay = OutboxRelay(world.reader, publisher, SQLiteLeaseLock(world.db, world.clock), world.clock)
    try:
        assert await publisher.check() is True
        await world.commit_toggles(2)
        outbox = await world.outbox()
        assert await world.relay.drain() == len(outbox)
        got = await read_back(kafka_bootstrap, [m.event.event_id for m in outbox])
        assert first_occurrences(got) == streams(outbox)
    finally:
        await publisher.aclose()
