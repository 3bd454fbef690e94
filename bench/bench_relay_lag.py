"""Outbox relay lag: from an event's commit to the broker's acknowledgement of it, while
connectors are toggled in bursts (100 toggles every 100 ms: 1,000 toggles/s) and the relay runs
as the worker runs it (``run_relay`` with the configured pass interval). No baseline: the
figure is a latency of ours alone, reported with the interval it depends on.

"On the topic" is when the publisher's ``publish`` returned for the batch holding the event:
the broker acknowledged every record of it (``acks=all``)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.bench_relay import Skipped, _broker


async def run(*, smoke: bool, interval: float = 0.5) -> list[str]:
    """One line per pass interval measured (the default, and 50 ms): lag p50 / p99 / max."""
    bursts, per_burst = (3, 10) if smoke else (30, 100)
    broker = _broker()
    broker.start()
    try:
        bootstrap = f"127.0.0.1:{broker.port}"
        return [await _measure(bootstrap, every, bursts, per_burst) for every in (interval, 0.05)]
    finally:
        broker.close()


async def _measure(bootstrap: str, pass_interval: float, bursts: int, per_burst: int) -> str:
    from adapters.crypto import Aead, Keyring
    from adapters.kafka import KafkaEventPublisher
    from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteOutboxReader, SQLiteUnitOfWork
    from adapters.system import SecureIds, SystemClock
    from connector_core.catalog import load_default_catalog
    from connector_core.model.events import SyncAction
    from connector_core.ports.outbox import OutboxMessage
    from connector_core.services.relay import OutboxRelay
    from entrypoints.relay_runner import run_relay
    from tests.builders import api_token_connector

    committed: dict[str, float] = {}
    acked: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        db = SQLiteDatabase(Path(tmp) / "outbox.db", sealer=Aead(Keyring.generate()))
        clock, ids, catalog = SystemClock(), SecureIds(), load_default_catalog()
        publisher = KafkaEventPublisher(bootstrap)
        await publisher.ensure_topics()
        publish = publisher.publish

        async def timed(messages: Sequence[OutboxMessage]) -> None:
            await publish(messages)
            now = time.perf_counter()
            for m in messages:
                acked.setdefault(m.event.event_id, now)

        publisher.publish = timed  # type: ignore[method-assign]
        relay = OutboxRelay(SQLiteOutboxReader(db), publisher, SQLiteLeaseLock(db, clock), clock)
        stop = asyncio.Event()
        runner = asyncio.create_task(run_relay(relay, pass_interval, stop))
        connector = api_token_connector(catalog, "bench-org", clock.now(), ids=ids)
        entry = catalog.get("confluence")

        async def toggle() -> None:
            connector.toggle(entry, by="admin", now=clock.now(), ids=ids, sync_action=SyncAction.NONE)
            events = connector.pull_events()
            async with SQLiteUnitOfWork(db) as uow:
                await uow.outbox.add(events)
                await uow.commit()
            stamp = time.perf_counter()
            for e in events:
                committed[e.event_id] = stamp

        async def all_acked(within: float) -> None:
            deadline = time.perf_counter() + within
            while len(acked) < len(committed) and time.perf_counter() < deadline:  # noqa: ASYNC110 - two dicts
                await asyncio.sleep(0.01)

        try:
            await toggle()  # warm-up, not counted: the producer connected, the topics known
            await all_acked(30)
            committed.clear()
            acked.clear()
            start = time.perf_counter()
            for b in range(bursts):
                for _ in range(per_burst):
                    await toggle()
                await asyncio.sleep(max(0.0, start + (b + 1) * 0.1 - time.perf_counter()))
            rate = len(committed) / (time.perf_counter() - start)
            await all_acked(30)
        finally:
            stop.set()
            await runner
            await publisher.aclose()
            await db.aclose()
    lags = sorted((acked[k] - v) * 1000 for k, v in committed.items() if k in acked)
    if len(lags) < len(committed):
        raise RuntimeError(f"{len(committed) - len(lags)} events never reached the broker")
    p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return (
        f"outbox relay lag (commit to broker acknowledgement), pass interval {pass_interval:g} s:"
        f" {len(lags):,} toggles committed at {rate:,.0f}/s in bursts;"
        f" p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {lags[-1]:.0f} ms"
    )


__all__ = ["Skipped", "run"]
