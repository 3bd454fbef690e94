"""Outbox relay: the relay draining N committed events from a SQLite outbox to the broker,
against a raw ``confluent_kafka.Producer`` (the same delivery settings) producing the same N
records (pre-encoded) to the same broker and flushing. Figures are events per second.

The broker is Tansu, the Kafka-compatible broker the test suite uses, started here in memory.
Without its binary (the test extras) the benchmark is skipped, saying so."""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import Row, alternate, from_pairs

if TYPE_CHECKING:
    from tests.servers import ServerProcess


class Skipped(Exception):
    """The benchmark cannot run here; the message says why."""


def _broker() -> ServerProcess:
    try:
        from tests.servers import kafka, tansu_binary

        tansu_binary()
    except (ImportError, AssertionError) as exc:
        raise Skipped(f"no Kafka-compatible broker binary (install the test extras): {exc}") from None
    return kafka()


async def run(*, smoke: bool) -> list[Row]:
    from confluent_kafka import Producer

    from adapters.crypto import Aead, Keyring
    from adapters.event_wire import kafka_record
    from adapters.kafka import KafkaEventPublisher, producer_config
    from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteOutboxReader, SQLiteUnitOfWork
    from adapters.system import SecureIds, SystemClock
    from connector_core.catalog import load_default_catalog
    from connector_core.model.events import SyncAction
    from connector_core.services.relay import OutboxRelay
    from tests.builders import api_token_connector

    # 9 rounds: a round is a fifth of a second of relaying on a shared machine, and single rounds
    # swing by a factor of two with the other people's load; the median of 9 moves less
    rounds, n = (2, 50) if smoke else (9, 5000)
    broker = _broker()
    broker.start()
    try:
        bootstrap = f"127.0.0.1:{broker.port}"
        with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
            db = SQLiteDatabase(Path(tmp) / "outbox.db", sealer=Aead(Keyring.generate()))
            clock, ids, catalog = SystemClock(), SecureIds(), load_default_catalog()
            publisher = KafkaEventPublisher(bootstrap)
            reader = SQLiteOutboxReader(db)
            relay = OutboxRelay(reader, publisher, SQLiteLeaseLock(db, clock), clock)
            connector = api_token_connector(catalog, "bench-org", clock.now(), ids=ids)
            await publisher.ensure_topics()
            producers = [Producer(producer_config(bootstrap))]

            async def commit_events() -> list[tuple[str, bytes, bytes, Any]]:
                """``n`` toggle events committed to the outbox (one unit of work); their records."""
                events = []
                for _ in range(n):
                    connector.toggle(
                        catalog.get("confluence"), by="admin", now=clock.now(), ids=ids, sync_action=SyncAction.NONE
                    )
                    events.extend(connector.pull_events())
                async with SQLiteUnitOfWork(db) as uow:
                    await uow.outbox.add(events)
                    await uow.commit()
                return [kafka_record(m) for m in await reader.pending(n)]

            async def ours() -> dict[str, float]:
                await commit_events()
                gc.collect()  # neither side pays for the other's (or the setup's) garbage
                t = time.perf_counter()
                published = await relay.drain(max_passes=n)
                elapsed = time.perf_counter() - t
                if published != n:
                    raise RuntimeError(f"the relay published {published} of {n}")
                return {"rate": n / elapsed}

            async def raw() -> dict[str, float]:
                records = await commit_events()
                await relay.drain(max_passes=n)  # not timed: keeps the outbox empty

                def produce() -> float:
                    producer = producers[0]
                    gc.collect()
                    t = time.perf_counter()
                    for topic, key, value, headers in records:
                        while True:
                            try:
                                producer.produce(topic, value, key, headers=headers)
                                break
                            except BufferError:
                                producer.poll(0.01)
                    if producer.flush(30) != 0:
                        raise RuntimeError("the raw producer did not deliver every record")
                    return time.perf_counter() - t

                return {"rate": n / await asyncio.to_thread(produce)}

            try:
                # warm-up, not counted: both producers connected, topics known, first batches sent
                await commit_events()
                await relay.drain(max_passes=n)
                await raw()
                pairs = await alternate(rounds, ours, raw)
            finally:
                producers.pop().flush(10)  # gone before the broker stops: no reconnect attempts logged
                await publisher.aclose()
                await db.aclose()
    finally:
        broker.close()
    return [
        from_pairs(
            "outbox relay to Kafka (SQLite outbox)",
            "raw confluent-kafka producer",
            "events/s",
            pairs,
            "rate",
            ">= 0.5",
            f"{n:,} events per round, Tansu broker in memory",
        )
    ]
